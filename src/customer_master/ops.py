"""Operations endpoints, without authentication: liveness, readiness, metrics."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from customer_master.errors import ServiceUnavailable

router = APIRouter(tags=["operations"], include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, str]:
    try:
        await request.app.state.db.ping(timeout_s=2)
    except Exception as exc:  # whatever keeps the database from answering: a lost server, a missing database
        raise ServiceUnavailable("The database does not answer") from exc
    return {"status": "ready"}


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
