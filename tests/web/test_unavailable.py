"""Without its database the web UI answers 503 with a "try again" page in its layout, never JSON or a crash.

A second app instance whose database does not answer (the shared test database is left alone); the
login page needs no database, everything behind it does.
"""

import re
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from customer_master.app import create_app
from customer_master.auth import security
from tests.conftest import JWT_SECRET, serve_app

TEXTS = {
    "en": {
        "title": "Database unavailable",
        "shown": "The database cannot be reached at the moment, so this page cannot be shown.",
        "sent": "The database cannot be reached at the moment. Nothing you sent was saved.",
        "again": "Please try again in a moment.",
        "button": "Try again",
    },
    "de": {
        "title": "Datenbank nicht erreichbar",
        "shown": "Die Datenbank ist im Moment nicht erreichbar, deshalb kann diese Seite nicht angezeigt werden.",
        "sent": (
            "Die Datenbank ist im Moment nicht erreichbar. Nichts von dem, was Sie gesendet haben, wurde gespeichert."
        ),
        "again": "Bitte versuchen Sie es gleich noch einmal.",
        "button": "Erneut versuchen",
    },
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def unreachable() -> Iterator[str]:
    app = create_app(f"postgresql://cm:cm@127.0.0.1:{_closed_port()}/cm", JWT_SECRET, pool_size=2)
    with serve_app(app) as (base_url, _):
        yield base_url


def session_cookie() -> str:
    """A well-signed login token: only the database could tell whom it belongs to."""
    return security.issue_jwt(JWT_SECRET, uuid.uuid4(), uuid.uuid4(), 3600)


def page_token(page: httpx.Response) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert match, page.text[:500]
    return match.group(1)


def assert_unavailable_page(response: httpx.Response, language: str, *, sent: bool, retry: str) -> None:
    texts = TEXTS[language]
    assert response.status_code == 503, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    body = response.text
    assert body.startswith("<!doctype html>")
    assert f'<html lang="{language}">' in body, "the UI's layout"
    assert f"<title>{texts['title']} · Customer Master</title>" in body
    assert texts["sent" if sent else "shown"] in body
    assert texts["again"] in body
    assert f'<a class="button primary" href="{retry}">{texts["button"]}</a>' in body
    assert "Traceback" not in body
    assert "SERVICE_UNAVAILABLE" not in body


@pytest.mark.parametrize("language", ["en", "de"])
def test_pages_and_form_posts_answer_503_with_a_try_again_page(unreachable: str, language: str) -> None:
    with httpx.Client(base_url=unreachable, timeout=30, headers={"Accept-Language": language}) as client:
        login = client.get("/login?next=/customers")  # needs no database
        assert login.status_code == 200
        token = page_token(login)

        # Logging in: the form was sent, nothing was saved; "try again" leads back to the form.
        response = client.post(
            "/login",
            data={"csrf_token": token, "org_slug": "acme", "email": "a@acme.example", "password": "x" * 12},
            headers={"Referer": f"{unreachable}/login?next=/customers"},
        )
        assert_unavailable_page(response, language, sent=True, retry="/login?next=/customers")

        client.cookies.set("cm_session", session_cookie())
        for path in ("/customers?q=M%C3%BCller", "/customers/new", "/import", "/detect", "/admin/users", "/"):
            response = client.get(path, follow_redirects=False)
            assert_unavailable_page(response, language, sent=False, retry=path.replace("&", "&amp;"))

        # A form post: its page is the one to go back to; without a Referer, the start page.
        form = {"csrf_token": token, "name": "Muster GmbH", "default_currency": "EUR", "default_language": "de"}
        response = client.post("/customers/new", data=form, headers={"Referer": f"{unreachable}/customers/new"})
        assert_unavailable_page(response, language, sent=True, retry="/customers/new")
        files = {"file": ("a.csv", b"name\nA\n", "text/csv")}
        response = client.post("/import/preview", data={"csrf_token": token}, files=files)
        assert_unavailable_page(response, language, sent=True, retry="/customers")


def test_an_htmx_request_gets_the_message_in_the_page_it_came_from(unreachable: str) -> None:
    headers = {"HX-Request": "true", "HX-Current-URL": f"{unreachable}/customers?q=abc", "Accept-Language": "de"}
    with httpx.Client(base_url=unreachable, timeout=30, headers=headers) as client:
        client.cookies.set("cm_session", session_cookie())
        response = client.get("/customers/rows?q=abcd")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["hx-retarget"] == "#flash"
    assert response.text.lstrip().startswith('<div class="alert" role="alert">')
    assert "Datenbank nicht erreichbar" in response.text
    assert '<a href="/customers?q=abc">Erneut versuchen</a>' in response.text


def test_the_api_keeps_its_json_error(unreachable: str) -> None:
    response = httpx.get(f"{unreachable}/api/v1/customers", headers={"Authorization": "Bearer cm_x"}, timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_in_the_browser_a_failed_login_and_a_page_say_try_again(browser: Browser, unreachable: str) -> None:
    context = browser.new_context(base_url=unreachable, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Organisation").fill("acme")
        page.get_by_label("E-mail").fill("admin@acme.example")
        page.get_by_label("Password").fill("correct-horse-battery")
        with page.expect_response("**/login") as answer:
            page.get_by_role("button", name="Log in").click()
        assert answer.value.status == 503
        expect(page.get_by_role("heading", level=1)).to_have_text("Database unavailable (503)")
        expect(page.locator("main")).to_contain_text("Nothing you sent was saved.")
        expect(page.get_by_role("link", name="Customer Master")).to_be_visible()  # the UI's own header
        page.get_by_role("link", name="Try again").click()
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/login$"))

        context.add_cookies([{"name": "cm_session", "value": session_cookie(), "url": unreachable}])
        response = page.goto("/customers")
        assert response is not None
        assert response.status == 503
        expect(page.get_by_role("heading", level=1)).to_have_text("Database unavailable (503)")
        expect(page.locator("main")).to_contain_text("this page cannot be shown")
        page.get_by_role("button", name="Deutsch").click()  # the language switcher needs no database
        expect(page.get_by_role("heading", level=1)).to_have_text("Datenbank nicht erreichbar (503)")
        with page.expect_response("**/customers") as reload:
            page.get_by_role("link", name="Erneut versuchen").click()
        assert reload.value.status == 503
        expect(page).to_have_url(re.compile(r"/customers$"))
    finally:
        context.close()
