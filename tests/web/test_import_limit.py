"""The web import's upload limit: a body over `CM_MAX_UPLOAD_MB` is cut off while it streams, as in the API.

A dedicated app instance with a 1 MB limit, wrapped in a middleware that counts the body bytes the app
takes from the server: that count, not the client's, shows how much of an upload was read.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from customer_master.app import create_app
from customer_master.imports.uploads import MULTIPART_OVERHEAD
from tests.conftest import JWT_SECRET, PASSWORD, Db, OrgContext, make_org, serve_app
from tests.web.conftest import WebOrg, log_in

MIB = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = "cm-web-boundary"
CSV_HEAD = b"name,erp_customer_number,default_currency,default_language\n"
CSV_ROW = b"Gross GmbH,1,EUR,de-DE\n"


@dataclass
class BodyCounter:
    """What the app took from the server, per request path: the body bytes, the last message, the answer."""

    received: dict[str, int] = field(default_factory=dict)
    last_message: dict[str, int] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def clear(self) -> None:
        self.received.clear()
        self.last_message.clear()
        self.answered.clear()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def count(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            path: str = scope["path"]

            async def counted() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    size = len(message.get("body", b""))
                    self.received[path] = self.received.get(path, 0) + size
                    self.last_message[path] = size
                return message

            async def noted(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.answered.add(path)
                await send(message)

            await app(scope, counted, noted)

        return count

    def read_before_stopping(self, path: str) -> int:
        """The bytes the app had taken before the message that made it stop."""
        return self.received.get(path, 0) - self.last_message.get(path, 0)


@dataclass
class LimitedServer:
    base_url: str
    counter: BodyCounter


@pytest.fixture(scope="module")
def _limited_server(database_url: str) -> Iterator[LimitedServer]:
    app: FastAPI = create_app(database_url, JWT_SECRET, pool_size=2)
    app.state.max_upload_mb = 1
    counter = BodyCounter()
    app.add_middleware(counter.middleware)  # type: ignore[arg-type]
    with serve_app(app) as (base_url, _):
        yield LimitedServer(base_url, counter)


@pytest.fixture
def limited_server(_limited_server: LimitedServer) -> LimitedServer:
    _limited_server.counter.clear()
    return _limited_server


@contextmanager
def web_client(base_url: str, org: OrgContext, language: str = "en") -> Iterator[httpx.Client]:
    """An httpx client logged in through the login form, as a browser is (session and CSRF cookies)."""
    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept-Language": language}) as client:
        page = client.get("/login")
        form = {"csrf_token": page_token(page), "org_slug": org.slug, "email": org.admin_email, "password": PASSWORD}
        response = client.post("/login", data=form)
        assert response.status_code == 303, response.text
        yield client


def page_token(page: httpx.Response) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert match, page.text[:500]
    return match.group(1)


def multipart_head(token: str, file_name: str = "big.csv") -> bytes:
    """The form as the import page sends it: the CSRF field first, then the file's part header."""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Upload:
    """A chunked body (a generator: httpx sends no Content-Length) that stops once the server has answered.

    `sent` is what the client had handed out when it saw the answer (the server answers in this process).
    """

    head: bytes
    file_bytes: int
    answered: Callable[[], bool] = lambda: False
    sent: int = 0

    def chunks(self) -> Iterator[bytes]:
        for part in self._parts():
            if self.answered():
                return  # the rest would only be drained by the server
            self.sent += len(part)
            yield part

    def _parts(self) -> Iterator[bytes]:
        yield self.head + CSV_HEAD
        rows = CHUNK // len(CSV_ROW)
        left = self.file_bytes - len(CSV_HEAD)
        while left > 0:
            part = (CSV_ROW * rows)[:left]
            left -= len(part)
            yield part
        yield multipart_tail()

    @property
    def total(self) -> int:
        return len(self.head) + self.file_bytes + len(multipart_tail())


def post_upload(client: httpx.Client, path: str, upload: Upload) -> httpx.Response:
    return client.post(
        path, content=upload.chunks(), headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


def _imports_and_customers(db: Db, org: OrgContext) -> tuple[int, int]:
    runs = db.fetch("SELECT count(*) FROM import_run WHERE org_id = :org", org=org.id)[0][0]
    customers = db.fetch("SELECT count(*) FROM customer WHERE org_id = :org", org=org.id)[0][0]
    return runs, customers


LIMIT = 1 * MIB + MULTIPART_OVERHEAD  # the file and the form's framing, as the API allows


def post_too_large(limited_server: "LimitedServer", org: OrgContext, path: str, language: str) -> httpx.Response:
    """A 256 MB chunked upload to `path`: refused with 413 as soon as it passed the limit, mid-send."""
    counter = limited_server.counter
    with web_client(limited_server.base_url, org, language) as client:
        token = page_token(client.get("/import"))
        upload = Upload(multipart_head(token), file_bytes=256 * MIB, answered=lambda: path in counter.answered)
        response = post_upload(client, path, upload)

    assert response.status_code == 413, response.text[:500]
    # The app stopped reading as soon as the body passed the limit …
    assert counter.read_before_stopping(path) <= LIMIT < counter.received[path], counter
    # … and answered while the client was still sending: it had handed out a few MB (what the socket
    # buffers hold) of the 256.
    assert upload.sent < upload.total // 4, (upload.sent, upload.total)
    return response


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "The file is larger than the upload limit of 1 MB."),
        ("de", "Die Datei ist größer als die Obergrenze von 1 MB für das Hochladen."),
    ],
)
@pytest.mark.parametrize("path", ["/import/preview", "/import/apply"])
def test_a_chunked_upload_over_the_limit_is_cut_off_and_shown_in_the_import_page(
    limited_server: LimitedServer, db: Db, path: str, language: str, message: str
) -> None:
    org = make_org(db)
    response = post_too_large(limited_server, org, path, language)

    assert response.headers["content-type"].startswith("text/html")
    assert 'id="import-form"' in response.text, "the import page itself, not an error page or JSON"
    assert message in response.text
    assert _imports_and_customers(db, org) == (0, 0), "nothing was imported, not even a dry run was recorded"


def test_the_failing_rows_download_is_cut_off_too(limited_server: LimitedServer, db: Db) -> None:
    response = post_too_large(limited_server, make_org(db), "/import/failed-rows", "en")

    assert response.headers["content-type"].startswith("text/html")
    assert "The file is larger than the upload limit of 1 MB." in response.text


def test_a_chunked_upload_within_the_limit_is_checked(limited_server: LimitedServer, db: Db) -> None:
    org = make_org(db)
    with web_client(limited_server.base_url, org) as client:
        token = page_token(client.get("/import"))
        upload = Upload(multipart_head(token, "small.csv"), file_bytes=MIB - 4096)
        response = post_upload(client, "/import/preview", upload)

    assert response.status_code == 200, response.text[:500]
    assert "Check of small.csv — nothing has been written yet" in response.text
    assert upload.sent == upload.total == limited_server.counter.received["/import/preview"]
    assert _imports_and_customers(db, org) == (1, 0), "a dry run: recorded, nothing written"


def test_an_upload_declared_too_large_is_refused_before_it_is_read(limited_server: LimitedServer, db: Db) -> None:
    org = make_org(db)
    with web_client(limited_server.base_url, org, "de") as client:
        token = page_token(client.get("/import"))
        body = multipart_head(token) + CSV_HEAD + CSV_ROW * (2 * MIB // len(CSV_ROW)) + multipart_tail()
        response = client.post(
            "/import/preview", content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        )

    assert response.status_code == 413
    assert "Die Datei ist größer als die Obergrenze von 1 MB für das Hochladen." in response.text
    assert limited_server.counter.received.get("/import/preview", 0) == 0
    assert _imports_and_customers(db, org) == (0, 0)


def test_a_forged_upload_is_refused_for_its_csrf_token(limited_server: LimitedServer, db: Db) -> None:
    org = make_org(db)
    with web_client(limited_server.base_url, org) as client:
        for path in ("/import/preview", "/import/apply", "/import/failed-rows"):
            upload = Upload(multipart_head("0" * 64, "small.csv"), file_bytes=4096)
            response = post_upload(client, path, upload)
            assert response.status_code == 403, path
            assert "not sent from this site" in response.text
        limited_server.counter.clear()
        cross_site = client.post(
            "/import/apply",
            content=Upload(multipart_head(page_token(client.get("/import")), "small.csv"), file_bytes=4096).chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403
        assert limited_server.counter.received.get("/import/apply", 0) == 0, "refused before the body was read"
    assert _imports_and_customers(db, org) == (0, 0)


def test_in_the_browser_a_file_over_the_limit_is_refused_in_the_page(
    browser: Browser, limited_server: LimitedServer, web_org: WebOrg
) -> None:
    context = browser.new_context(base_url=limited_server.base_url, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        log_in(page, web_org)
        page.goto("/import")
        big = CSV_HEAD + CSV_ROW * (MIB // len(CSV_ROW) + 1000)
        file = {"name": "big.csv", "mimeType": "text/csv", "buffer": big}
        page.get_by_label("CSV file").set_input_files(files=[file])
        page.get_by_role("button", name="Check the file (dry run)").click()
        expect(page.locator("#import-report").get_by_role("alert")).to_have_text(
            "The file was not imported: The file is larger than the upload limit of 1 MB."
        )
        expect(page.get_by_role("heading", level=1)).to_have_text("Import / export")
        expect(page.locator("#import-history")).to_contain_text("No imports yet.")
    finally:
        context.close()
