"""CSV import in the browser: dry-run report first, then apply, then the failing rows as CSV; export."""

import csv
import io

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import create_customer
from tests.web.conftest import WebOrg, log_in

# A German ERP export: semicolons, Windows-1252, one bad row (line 4), one unknown column.
CSV_TEXT = (
    "name;erp_customer_number;default_currency;default_language;billing_city;contact_email;phone\r\n"
    "Müller & Söhne KG;4712;EUR;de-DE;Köln;bestellung@mueller.de;0221 123\r\n"
    "Alpenhandel AG;CH-100;chf;de-CH;Zürich;orders@alpenhandel.ch;\r\n"
    "Kaputt GmbH;4713;USD123;de-DE;Bonn;einkauf@kaputt.de;\r\n"
    "Muster GmbH;4711;EUR;de-DE;Augsburg;;\r\n"
)


def test_import_preview_apply_and_download_failing_rows(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    create_customer(client, web_org.org)  # 4711, billing city München: the file updates it
    log_in(page, web_org)
    page.get_by_role("link", name="Import / export").click()
    expect(page.locator("#import-history")).to_contain_text("No imports yet.")
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "erp-export.csv", "mimeType": "text/csv", "buffer": CSV_TEXT.encode("cp1252")}]
    )
    page.get_by_role("button", name="Check the file (dry run)").click()

    report = page.locator("#import-report")
    expect(report).to_contain_text("Check of erp-export.csv — nothing has been written yet")
    expect(report.locator("#count-rows")).to_have_text("4")
    expect(report.locator("#count-imported")).to_have_text("2")
    expect(report.locator("#count-updated")).to_have_text("1")
    expect(report.locator("#count-failed")).to_have_text("1")
    expect(report.locator("#detected-encoding")).to_have_text("windows-1252")
    expect(report.locator("#detected-delimiter")).to_have_text(";")
    expect(report.locator(".warnings")).to_contain_text("phone")
    error_rows = report.locator("table.import-errors tbody tr")
    expect(error_rows).to_have_count(1)
    expect(error_rows.first.locator("td")).to_have_text(
        ["4", "default_currency", "USD123", "Invalid currency code: USD123"]
    )
    expect(page.locator("#import-history tbody tr")).to_have_count(1)
    expect(page.locator("#import-history tbody tr").first).to_contain_text("dry run")
    listed = client.get("/api/v1/customers", headers=web_org.org.headers()).json()["items"]
    assert [c["name"] for c in listed] == ["Muster GmbH"], "a dry run writes nothing"

    page.get_by_role("button", name="Apply the import").click()
    expect(report.locator(".notice")).to_have_text("erp-export.csv was imported.")
    expect(report.locator("#count-imported")).to_have_text("2")
    expect(report.get_by_role("button", name="Apply the import")).to_have_count(0)
    expect(page.locator("#import-history tbody tr")).to_have_count(2)
    listed = client.get("/api/v1/customers", headers=web_org.org.headers()).json()["items"]
    assert [(c["name"], c["billing_address"]["city"]) for c in listed] == [
        ("Alpenhandel AG", "Zürich"),
        ("Muster GmbH", "Augsburg"),
        ("Müller & Söhne KG", "Köln"),
    ]

    with page.expect_download() as download_info:
        report.get_by_role("button", name="Download the failing rows (CSV)").click()
    download = download_info.value
    assert download.suggested_filename == "erp-export-failed-rows.csv"
    content = download.path().read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == [*CSV_TEXT.split("\r\n")[0].split(";"), "import_error"]
    assert rows[1][:7] == ["Kaputt GmbH", "4713", "USD123", "de-DE", "Bonn", "einkauf@kaputt.de", ""]
    assert "default_currency" in rows[1][7]
    assert len(rows) == 2


def test_a_changed_file_is_checked_again_instead_of_applied(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    log_in(page, web_org)
    page.goto("/import")
    first = "name,default_currency,default_language,erp_customer_number\nErst GmbH,EUR,de-DE,1\n"
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "a.csv", "mimeType": "text/csv", "buffer": first.encode()}]
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(page.locator("#count-imported")).to_have_text("1")
    second = first + "Zweit GmbH,EUR,de-DE,2\n"
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "a.csv", "mimeType": "text/csv", "buffer": second.encode()}]
    )
    page.get_by_role("button", name="Apply the import").click()
    expect(page.locator("#import-report .warning").first).to_contain_text("The file changed since it was checked")
    expect(page.locator("#count-imported")).to_have_text("2")
    assert client.get("/api/v1/customers", headers=web_org.org.headers()).json()["items"] == []


def test_rejected_file_and_export(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    create_customer(client, web_org.org, contacts=[{"email": "einkauf@muster.de", "is_primary": True}])
    log_in(page, web_org)
    page.goto("/import")
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b'name,default_currency\n"open,EUR\n'}]
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(page.get_by_role("alert")).to_contain_text("The file was not imported:")

    page.get_by_label("Delimiter").select_option(";")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    exported = download_info.value.path().read_text(encoding="utf-8")
    lines = exported.splitlines()
    assert lines[0].startswith("name;erp_customer_number;default_currency")
    assert lines[1].startswith("Muster GmbH;4711;EUR;de-DE")
    assert "einkauf@muster.de" in lines[1]
