"""One headless Chromium for the whole session (Debian's, installed by `scripts/ensure-chromium.sh`),
a fresh browser context per test, against the real test server of `tests/conftest.py`."""

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import UserCreate
from customer_master.auth.tenancy import OrgId
from tests.conftest import PASSWORD, Db, OrgContext, Server, make_org

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser(server: Server) -> Iterator[Browser]:
    """Started after the server: Playwright's sync API keeps an event loop running in this thread."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@dataclass
class WebOrg:
    """An org of its own for one test, with a way to add users of any role."""

    org: OrgContext
    db: Db

    @property
    def slug(self) -> str:
        return self.org.slug

    @property
    def admin_email(self) -> str:
        return self.org.admin_email

    def add_user(self, role: Role) -> str:
        email = f"{role.value.lower()}-{secrets.token_hex(3)}@{self.slug}.example.com"

        async def create() -> None:
            async with self.db.database.transaction() as session:
                data = UserCreate(email=email, name=f"A {role.value.title()}", role=role, password=PASSWORD)
                await auth_service.create_user(session, OrgId(self.org.id), data)

        self.db.run(create())
        return email


@pytest.fixture
def web_org(db: Db) -> WebOrg:
    return WebOrg(make_org(db), db)


def log_in(page: Page, org: WebOrg, email: str | None = None, password: str = PASSWORD) -> None:
    """Through the login form, as a person does."""
    page.goto("/login")
    page.get_by_label("Organisation").fill(org.slug)
    page.get_by_label("E-mail").fill(email or org.admin_email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Customers", exact=True)).to_be_visible()


def csrf_token(page: Page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    return token


def htmx_settled(page: Page) -> None:
    """Wait until htmx has settled its last swap: only then do the links and forms it brought in send their
    requests by htmx (in the 20 ms before, a click follows the plain link and loads the whole page)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
