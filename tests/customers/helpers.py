"""Small helpers shared by the customer and contact tests."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import httpx

from tests.conftest import OrgContext

T = TypeVar("T")


def add_contact(client: httpx.Client, org: OrgContext, customer_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/customers/{customer_id}/contacts", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def get_customer(client: httpx.Client, org: OrgContext, customer_id: str) -> httpx.Response:
    response = client.get(f"/api/v1/customers/{customer_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    return response


def timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp of the API as an aware datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, value
    return parsed


def error_fields(error: dict[str, Any]) -> set[str | None]:
    """The `field`s a 422 names."""
    return {problem["field"] for problem in error["details"]["errors"]}


def run_together(base_url: str, count: int, call: Callable[[httpx.Client, int], T]) -> list[T]:
    """`count` calls at once, each on its own thread and connection, released by one barrier."""
    barrier = threading.Barrier(count)

    def one(index: int) -> T:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            barrier.wait(timeout=30)
            return call(http, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))
