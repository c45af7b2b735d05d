"""Screenshots of the web UI for the README: the customer list, a customer page, an import preview.

Self-contained: starts an embedded PostgreSQL in a temporary directory, loads the demo org (as
`serve --demo` does), serves the app on a free loopback port and drives Debian's Chromium
(`scripts/ensure-chromium.sh` installs it).

    .venv/bin/python scripts/screenshots.py [--out docs]
"""

import argparse
import asyncio
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from playwright.sync_api import Page, sync_playwright

from customer_master.app import create_app
from customer_master.db.embedded import ensure_database, start_embedded_server, stop_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from customer_master.demo import DEMO_PASSWORD, DEMO_SLUG, ensure_demo_org

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
IMPORT_CSV = (
    "name;erp_customer_number;default_currency;default_language;billing_city;billing_country;contact_email;fax\r\n"
    "Nordlicht Handels GmbH;5001;EUR;de-DE;Lübeck;DE;einkauf@nordlicht.de;040 1234\r\n"
    "Muster GmbH;4711;EUR;de-DE;Augsburg;DE;einkauf@muster.de;\r\n"
    "Bergblick AG;5002;CHFX;de-CH;Bern;CH;orders@bergblick.ch;\r\n"
    "Seeblick KG;5003;EUR;de-DE;Konstanz;Deutschland;info@seeblick;\r\n"
    "Ostwind GmbH;;EUR;de-DE;Rostock;DE;;\r\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _prepare(data_dir: Path) -> str:
    url = await ensure_database(await asyncio.to_thread(start_embedded_server, data_dir), "screenshots")
    await asyncio.to_thread(upgrade_to_head, url)
    database = Database(url, pool_size=1)
    try:
        async with database.transaction() as session:
            await ensure_demo_org(session)
    finally:
        await database.dispose()
    return url


@contextmanager
def _serve(database_url: str) -> Iterator[str]:
    port = _free_port()
    app = create_app(database_url, secrets.token_urlsafe(32))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _log_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Organisation").fill(DEMO_SLUG)
    page.get_by_label("E-mail").fill("admin@demo.example.com")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Customers", exact=True).wait_for()


def take_screenshots(base_url: str, out: Path) -> list[Path]:
    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800}, locale="en-US")
        page = context.new_page()
        _log_in(page)

        path = out / "web-customers.png"
        page.screenshot(path=path, full_page=True)
        saved.append(path)

        page.get_by_role("link", name="Muster GmbH").click()
        page.get_by_role("heading", name="Muster GmbH").wait_for()
        path = out / "web-customer.png"
        page.screenshot(path=path, full_page=True)
        saved.append(path)

        page.goto("/import")
        csv_file = {"name": "erp-export.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV.encode("cp1252")}
        page.get_by_label("CSV file").set_input_files(files=[csv_file])
        page.get_by_role("button", name="Check the file (dry run)").click()
        page.get_by_role("button", name="Apply the import").wait_for()
        path = out / "web-import-preview.png"
        page.screenshot(path=path, full_page=True)
        saved.append(path)

        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/customers")
        path = out / "web-customers-phone.png"
        page.screenshot(path=path)
        saved.append(path)
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="cm-screenshots-"))
    try:
        database_url = asyncio.run(_prepare(data_dir))
        with _serve(database_url) as base_url:
            for path in take_screenshots(base_url, args.out):
                print(path)
    finally:
        stop_embedded_server(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
