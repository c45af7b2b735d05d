"""`customer-master import` and `customer-master export` (API.md §9), run as subprocesses on the test database."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Db, OrgContext, create_customer
from tests.customers.helpers import add_contact
from tests.imports.helpers import HEADER, count_customers, csv_of, customer_by_erp, customer_row, snapshot

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
    return env | {"DATABASE_URL": database_url, "CM_DATA_DIR": str(tmp_path_factory.mktemp("cli")), "NO_COLOR": "1"}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXECUTABLE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def write(tmp_path: Path, content: str | bytes, name: str = "kunden.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def test_import_prints_a_summary_and_exits_0_when_every_row_applied(
    cli_env: dict[str, str], tmp_path: Path, client: httpx.Client, org: OrgContext
) -> None:
    content = "name;erp_customer_number;default_currency;default_language;contact_email\n"
    content += "Müller GmbH;CLI-1;EUR;de-DE;einkauf@mueller.de\nSchäfer KG;CLI-2;CHF;de-CH;\n"

    result = cli(cli_env, "import", write(tmp_path, content.encode("cp1252")), "--org", org.slug)

    assert result.returncode == 0, result.stderr
    assert "imported           2" in result.stdout
    assert "windows-1252" in result.stdout
    assert "\x1b[" not in result.stdout, "no progress bar or colours when not on a terminal"
    assert customer_by_erp(client, org, "CLI-1")["name"] == "Müller GmbH"
    (run,) = client.get("/api/v1/imports", headers=org.headers()).json()["items"]
    assert (run["source"], run["file_name"], run["user_email"], run["token_name"]) == ("cli", "kunden.csv", None, None)
    customer_id = customer_by_erp(client, org, "CLI-1")["id"]
    history = client.get(f"/api/v1/customers/{customer_id}/history", headers=org.headers()).json()["items"]
    assert {(e["type"], e["source"], e["import_id"], e["request_id"]) for e in history} == {
        ("customer.created", "import", run["id"], None),
        ("contact.created", "import", run["id"], None),
    }
    assert {e["actor"]["label"] for e in history} == {"customer-master import"}
    assert {e["actor"]["type"] for e in history} == {"system"}


def test_import_json_prints_the_report_and_exits_1_when_rows_failed(
    cli_env: dict[str, str], tmp_path: Path, org: OrgContext
) -> None:
    content = csv_of([customer_row("J-1"), customer_row("J-2", default_currency="USD123")])

    result = cli(cli_env, "import", write(tmp_path, content), "--org", org.slug, "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["rows"], report["imported"], report["failed"], report["dry_run"]) == (2, 1, 1, False)
    assert report["errors"] == [
        {"row": 3, "field": "default_currency", "value": "USD123", "error": "Invalid currency code: USD123"}
    ]
    assert set(report) == {
        "rows", "imported", "updated", "unchanged", "failed", "contacts_created", "contacts_updated",
        "errors", "warnings", "encoding", "delimiter", "dry_run", "import_id",
    }  # fmt: skip


def test_dry_run_writes_nothing_and_reports_like_the_api(
    cli_env: dict[str, str], tmp_path: Path, client: httpx.Client, db: Db, org: OrgContext
) -> None:
    create_customer(client, org, erp_customer_number="DRC-1")
    content = csv_of([customer_row("DRC-1", name="Neu"), customer_row("DRC-2")])
    before = snapshot(db, org)

    dry = cli(cli_env, "import", write(tmp_path, content), "--org", org.slug, "--dry-run", "--json")

    assert dry.returncode == 0, dry.stderr
    assert snapshot(db, org) == before
    api = client.post(
        "/api/v1/imports/customers", files={"file": ("k.csv", content.encode(), "text/csv")}, headers=org.headers()
    ).json()
    dry_report = json.loads(dry.stdout)
    assert dry_report["import_id"] != api["import_id"], "each run has its own /imports record"
    assert dry_report == {**api, "dry_run": True, "import_id": dry_report["import_id"]}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        ((HEADER + '\nA GmbH,1,EUR,de\n"B GmbH,2,EUR,de\n').encode(), "Line 3: unterminated quoted field"),
        (b"name,erp_customer_number\nA,1\n", "missing required column default_currency, default_language"),
    ],
)
def test_a_rejected_file_exits_2_with_the_reason_on_stderr(
    cli_env: dict[str, str], tmp_path: Path, db: Db, org: OrgContext, content: bytes, says: str
) -> None:
    result = cli(cli_env, "import", write(tmp_path, content), "--org", org.slug, "--json")

    assert result.returncode == 2
    assert says in result.stderr
    assert result.stdout == ""
    assert count_customers(db, org) == 0


def test_an_unknown_org_or_a_missing_file_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    no_org = cli(cli_env, "import", write(tmp_path, HEADER + "\nA,1,EUR,de\n"), "--org", "no-such-org")
    no_file = cli(cli_env, "import", str(tmp_path / "missing.csv"), "--org", "no-such-org")

    assert (no_org.returncode, no_file.returncode) == (2, 2)
    assert "no-such-org" in no_org.stderr
    assert "missing.csv" in no_file.stderr


def test_export_writes_the_import_format_and_reimports_unchanged(
    cli_env: dict[str, str], tmp_path: Path, client: httpx.Client, db: Db, org: OrgContext
) -> None:
    customer = create_customer(client, org, erp_customer_number="EX-1", name='Größe "XL", GmbH')
    add_contact(client, org, customer["id"], email="a@ex.de", name="Ä", is_primary=True)
    add_contact(client, org, customer["id"], email="b@ex.de")
    target = tmp_path / "export.csv"

    to_file = cli(cli_env, "export", "--org", org.slug, "-o", str(target), "--delimiter", ";")
    to_stdout = cli(cli_env, "export", "--org", org.slug)

    assert to_file.returncode == 0, to_file.stderr
    assert to_stdout.returncode == 0, to_stdout.stderr
    api = client.get("/api/v1/exports/customers.csv", headers=org.headers())
    assert to_stdout.stdout == api.text.replace("\r\n", "\n"), "the same export (text mode reads CRLF as LF)"
    assert target.read_bytes().decode().startswith("name;erp_customer_number;")
    before = snapshot(db, org)
    again = cli(cli_env, "import", str(target), "--org", org.slug, "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["unchanged"], json.loads(again.stdout)["delimiter"]) == (1, ";")
    assert snapshot(db, org) == before


def test_export_of_an_unknown_org_exits_2(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "export", "--org", "no-such-org")
    assert result.returncode == 2
    assert "no-such-org" in result.stderr


def test_on_a_terminal_import_shows_a_progress_bar(cli_env: dict[str, str], tmp_path: Path, org: OrgContext) -> None:
    import pty

    primary, secondary = pty.openpty()
    path = write(tmp_path, csv_of([customer_row(f"TTY-{n}") for n in range(50)]))
    env = cli_env | {"TERM": "xterm-256color", "COLUMNS": "120"}
    with os.fdopen(primary, "rb", buffering=0) as terminal:
        result = subprocess.run(
            [EXECUTABLE, "import", path, "--org", org.slug],
            env=env,
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
            check=False,
        )
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := terminal.read(65536):
                shown += chunk

    assert result.returncode == 0
    assert b"Done" in shown
    assert b"50 rows" in shown
    assert b"imported          50" in result.stdout
