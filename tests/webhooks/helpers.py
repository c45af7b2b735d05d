"""Webhook test helpers: a real HTTP receiver on 127.0.0.1, waits on conditions with a deadline."""

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.conftest import OrgContext, create_customer


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int
    at: float

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


class Receiver:
    """An HTTP receiver on 127.0.0.1: records every request; answers `status` (per path, or a function of the
    number of requests so far on that path), can hold requests at a gate, and counts requests in flight."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status: dict[str, int | Callable[[int], int]] = {}
        self.hold: dict[str, threading.Event] = {}  # path → released when set
        self.arrived = threading.Condition()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.delay_s = 0.0
        self.arrivals: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        with self.arrived:
            self.arrivals[path] += 1
            number = self.arrivals[path]
            self.in_flight[path] += 1
            self.max_in_flight[path] = max(self.max_in_flight[path], self.in_flight[path])
            self.arrived.notify_all()
        gate = self.hold.get(path)
        if gate is not None:
            gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        answer = self.status.get(path, 200)
        status = answer(number) if callable(answer) else answer
        request.send_response(status)
        if 300 <= status < 400:
            request.send_header("Location", self.url("/elsewhere"))
        request.send_header("Content-Length", "0")
        request.end_headers()
        with self.arrived:
            self.in_flight[path] -= 1
            headers = {name.lower(): value for name, value in request.headers.items()}
            self.requests.append(Received(path, headers, body, status, time.monotonic()))
            self.arrived.notify_all()

    def received(self, path: str, *, delivered_only: bool = False) -> list[Received]:
        with self.arrived:
            return [r for r in self.requests if r.path == path and (not delivered_only or 200 <= r.status < 300)]

    def delivered_sequences(self, path: str) -> list[int]:
        return [r.event["sequence"] for r in self.received(path, delivered_only=True)]

    def close(self) -> None:
        for gate in self.hold.values():
            gate.set()
        self._server.shutdown()
        self._server.server_close()


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 15) -> Any:
    """The first truthy value of `condition()`, polled until the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def create_webhook(client: httpx.Client, org: OrgContext, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, **fields}, headers=org.headers())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def change(client: httpx.Client, org: OrgContext, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
    """`count` new customers: one `customer.created` event each (and one per contact given)."""
    tag = f"{time.monotonic_ns()}"
    return [
        create_customer(client, org, name=f"Kunde {tag}-{i}", erp_customer_number=f"W{tag}-{i}", **fields)
        for i in range(count)
    ]


def feed(client: httpx.Client, org: OrgContext, after: str = "0") -> list[dict[str, Any]]:
    response = client.get("/api/v1/events", params={"after": after, "limit": 200}, headers=org.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def feed_end(client: httpx.Client, org: OrgContext) -> str:
    response = client.get("/api/v1/events", params={"after": "now"}, headers=org.headers())
    cursor: str = response.json()["next_cursor"]
    return cursor


def deliveries(client: httpx.Client, org: OrgContext, webhook_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"limit": 200}, headers=org.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
