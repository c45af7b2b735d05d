"""The framework's floor for a get-one: what no FastAPI service on uvicorn can skip to answer
`GET /api/v1/customers/{id}`.

One route with one dependency (a pooled asyncpg connection on which the caller is looked up by the
product's own statement), the product's own customer statement, the row as JSON. No token check, no
roles, no response model, no ETag, no metrics, no middleware. `api.py` serves it the way
`customer-master serve` serves the product (uvicorn with httptools and uvloop, the same workers, its
access log on) and measures it beside the product in the same run.

Run as `uvicorn framework_floor:app --app-dir bench` with `DATABASE_URL`, `CM_FLOOR_ORG_ID` and
`CM_FLOOR_USER_ID` in the environment.
"""

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request, Response

from customer_master.auth.repository import PRINCIPAL_FROM_USER
from customer_master.customers.repository import GET_CUSTOMER

ORG_ID = uuid.UUID(os.environ["CM_FLOOR_ORG_ID"])
USER_ID = uuid.UUID(os.environ["CM_FLOOR_USER_ID"])


async def no_reset(connection: asyncpg.Connection) -> None:
    """As the product's read pool: a connection goes back as it is (asyncpg's reset is a round trip)."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10, reset=no_reset)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with request.app.state.pool.acquire() as conn:
        if await conn.fetchrow(PRINCIPAL_FROM_USER, USER_ID, ORG_ID) is None:
            raise HTTPException(401)
        yield conn


@app.get("/api/v1/customers/{id}")
async def get_customer(id: uuid.UUID, conn: Annotated[asyncpg.Connection, Depends(connection)]) -> Response:
    row = await conn.fetchrow(GET_CUSTOMER, ORG_ID, id)
    if row is None:
        raise HTTPException(404)
    return Response(json.dumps(dict(row), default=str).encode(), media_type="application/json")
