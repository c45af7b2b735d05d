"""The HTTP edge of import and export: roles, media type, upload limit, the export's format, the round trip."""

import csv
import io
import re
import socket
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from customer_master.app import create_app
from customer_master.auth.models import Role
from tests.conftest import JWT_SECRET, Db, OrgContext, Server, assert_error, create_customer, serve_app
from tests.customers.helpers import add_contact
from tests.imports.helpers import HEADER, count_customers, csv_of, customer_row, import_ok, post_csv, snapshot

EXPORT_COLUMNS = [
    "name", "erp_customer_number", "default_currency", "default_language",
    "billing_street", "billing_street2", "billing_city", "billing_postal_code", "billing_state", "billing_country",
    "shipping_street", "shipping_street2", "shipping_city", "shipping_postal_code", "shipping_state",
    "shipping_country",
    "contact_email", "contact_name", "contact_is_primary",
]  # fmt: skip


def export(client: httpx.Client, org: OrgContext, **params: str) -> httpx.Response:
    response = client.get("/api/v1/exports/customers.csv", params=params, headers=org.headers())
    assert response.status_code == 200, response.text
    return response


def rows_of(response: httpx.Response, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text, newline=""), delimiter=delimiter))


# --- roles, media type, limits ------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPS])
def test_viewers_and_ops_may_neither_import_nor_export(
    client: httpx.Client, db: Db, org: OrgContext, role: Role
) -> None:
    assert_error(post_csv(client, org, HEADER + "\nA GmbH,1,EUR,de\n", role=role), 403, "FORBIDDEN")
    exported = client.get("/api/v1/exports/customers.csv", headers=org.headers(role))
    assert_error(exported, 403, "FORBIDDEN")
    assert count_customers(db, org) == 0


def test_integrators_import_and_export(client: httpx.Client, org: OrgContext) -> None:
    assert import_ok(client, org, HEADER + "\nA GmbH,1,EUR,de\n", role=Role.INTEGRATOR)["imported"] == 1
    response = client.get("/api/v1/exports/customers.csv", headers=org.headers(Role.INTEGRATOR))
    assert response.status_code == 200


def test_import_without_a_token_is_401(client: httpx.Client) -> None:
    response = client.post("/api/v1/imports/customers", files={"file": ("a.csv", b"x", "text/csv")})
    assert_error(response, 401, "AUTH_REQUIRED")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"file": "name"}'), ("text/csv", b"name\nA\n"), (None, b"")],
)
def test_a_body_that_is_not_multipart_is_415(
    client: httpx.Client, org: OrgContext, content_type: str | None, body: bytes
) -> None:
    headers = org.headers() | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/api/v1/imports/customers", content=body, headers=headers)
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_a_multipart_body_without_the_file_field_is_422(client: httpx.Client, org: OrgContext) -> None:
    response = client.post(
        "/api/v1/imports/customers", files={"upload": ("a.csv", b"x", "text/csv")}, headers=org.headers()
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "file"


def test_dry_run_must_be_a_boolean(client: httpx.Client, org: OrgContext) -> None:
    response = client.post(
        "/api/v1/imports/customers?dry_run=vielleicht",
        files={"file": ("a.csv", b"x", "text/csv")},
        headers=org.headers(),
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "dry_run"


def _raw_upload(base_url: str, token: str, head_body: bytes, *, length: int | None, chunks: Iterator[bytes]) -> bytes:
    """Send an upload over a plain socket (so nothing is buffered) and return what the server answered."""
    url = urllib.parse.urlsplit(base_url)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    request = (
        f"POST /api/v1/imports/customers HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=cm-boundary\r\n{framing}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        try:
            for chunk in [head_body, *chunks]:
                sock.sendall(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server answered and closed before taking everything: that is the point
        answer = b""
        while not answer.endswith(b"}") and (data := sock.recv(65536)):
            answer += data
        return answer


PART_HEAD = (
    b'--cm-boundary\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n"
)


def test_an_upload_declared_larger_than_the_limit_is_413_without_reading_it(server: Server, org: OrgContext) -> None:
    # Announces 200 MB (the default limit is 100 MB) but sends only 64 KB: the answer must not wait for the rest.
    answer = _raw_upload(
        server.base_url, org.tokens[Role.ADMIN], PART_HEAD, length=200 * 1024 * 1024, chunks=iter([b"x" * 65536])
    )

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"PAYLOAD_TOO_LARGE"' in answer


def test_a_streamed_upload_is_cut_off_at_the_configured_limit(database_url: str, db: Db, org: OrgContext) -> None:
    app = create_app(database_url, JWT_SECRET, pool_size=2)
    app.state.max_upload_mb = 1
    row = b"Gro\xc3\x9f GmbH,1,EUR,de\n"
    with serve_app(app) as (base_url, _):
        within = httpx.post(
            f"{base_url}/api/v1/imports/customers",
            files={"file": ("ok.csv", (HEADER + "\n").encode() + row * 40_000, "text/csv")},  # ~0.8 MB
            headers=org.headers(),
            timeout=60,
        )
        answer = _raw_upload(
            base_url, org.tokens[Role.ADMIN], PART_HEAD, length=None, chunks=iter([b"y" * 65536] * 48)
        )  # 3 MB, chunked: no Content-Length to go by

    assert within.status_code == 200, within.text
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"upload limit of 1 MB" in answer


# --- export -------------------------------------------------------------------------------------


def test_the_export_is_a_csv_attachment_in_the_import_format(client: httpx.Client, org: OrgContext) -> None:
    beta = create_customer(
        client,
        org,
        name="beta GmbH",
        erp_customer_number="B-1",
        metadata={"zahlungsziel": "30 Tage", "rabatt": 5, "flags": {"a": True}},
        shipping_address={"city": "Wien", "country": "at"},
    )
    add_contact(client, org, beta["id"], email="zeta@beta.de", name="Zeta")
    add_contact(client, org, beta["id"], email="anna@beta.de", name="Anna")
    add_contact(client, org, beta["id"], email="primary@beta.de", is_primary=True)
    create_customer(client, org, name="Alpha AG", erp_customer_number=None, metadata={}, billing_address=None)

    response = export(client, org)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert re.search(r'filename="[^"]+\.csv"', disposition)
    header = next(csv.reader(io.StringIO(response.text)))
    assert header == [*EXPORT_COLUMNS, "metadata_flags", "metadata_rabatt", "metadata_zahlungsziel"]
    rows = rows_of(response)
    assert [(row["name"], row["contact_email"], row["contact_is_primary"]) for row in rows] == [
        ("Alpha AG", "", ""),
        ("beta GmbH", "primary@beta.de", "true"),
        ("beta GmbH", "anna@beta.de", "false"),
        ("beta GmbH", "zeta@beta.de", "false"),
    ]
    beta_row = rows[1]
    assert beta_row["billing_street"] == "Musterstraße 1"
    assert (beta_row["shipping_city"], beta_row["shipping_country"], beta_row["shipping_street"]) == ("Wien", "AT", "")
    assert beta_row["metadata_rabatt"] == "5"
    assert beta_row["metadata_flags"] == '{"a": true}'
    assert beta_row["metadata_zahlungsziel"] == "30 Tage"
    assert rows[0]["metadata_rabatt"] == ""
    assert response.text.endswith("\r\n")


def test_the_export_takes_a_delimiter(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, name="Komma, Punkt; Strich GmbH")

    semicolon = export(client, org, delimiter=";")
    tab = export(client, org, delimiter="\t")

    assert semicolon.text.splitlines()[0].startswith("name;erp_customer_number;")
    assert rows_of(semicolon, ";")[0]["name"] == "Komma, Punkt; Strich GmbH"
    assert rows_of(tab, "\t")[0]["name"] == "Komma, Punkt; Strich GmbH"
    bad = client.get("/api/v1/exports/customers.csv", params={"delimiter": "|"}, headers=org.headers())
    assert assert_error(bad, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "delimiter"


def test_the_export_holds_only_the_callers_org(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    create_customer(client, other_org, name="Fremd GmbH")

    assert rows_of(export(client, org)) == []
    assert [row["name"] for row in rows_of(export(client, other_org))] == ["Fremd GmbH"]


def test_export_then_import_reports_every_customer_unchanged(client: httpx.Client, db: Db, org: OrgContext) -> None:
    tricky = create_customer(
        client,
        org,
        name='Bäckerei "Zum Schlüssel", Inh. Jörg Weiß',
        erp_customer_number="RT-1",
        default_language="de-AT",
        billing_address={"street": "Hof 3\nEingang B; hinten", "city": "Graz", "postal_code": "8010", "country": "AT"},
        shipping_address={"street": "Lager, Tor 2", "city": "Graz", "country": "AT"},
        metadata={"rabatt": "5 %", "notiz": 'sagt "Servus"\r\nund tschüss', "leer": ""},
    )
    add_contact(client, org, tricky["id"], email="einkauf@schlüssel.at", name="Jörg Weiß", is_primary=True)
    add_contact(client, org, tricky["id"], email="buchhaltung@schluessel.at", name="Ä, Ö; Ü")
    add_contact(client, org, tricky["id"], email="lager@schluessel.at")
    create_customer(client, org, name="Ohne Kontakte GmbH", erp_customer_number="RT-2", metadata={"rabatt": "A"})
    plain = create_customer(client, org, name="Zwei Kontakte AG", erp_customer_number="RT-3", metadata={})
    add_contact(client, org, plain["id"], email="b@zwei.de", name="B")
    add_contact(client, org, plain["id"], email="a@zwei.de", name="A")
    before = snapshot(db, org)

    for delimiter in (",", ";"):
        exported = export(client, org, delimiter=delimiter).content
        report = import_ok(client, org, exported)

        assert report["delimiter"] == delimiter
        assert (report["rows"], report["unchanged"], report["imported"], report["updated"]) == (6, 3, 0, 0)
        assert (report["failed"], report["contacts_created"], report["contacts_updated"]) == (0, 0, 0)
        assert report["warnings"] == []
        assert snapshot(db, org) == before


def test_import_rows_are_counted_in_the_metrics(client: httpx.Client, org: OrgContext) -> None:
    def value(outcome: str) -> float:
        text = client.get("/metrics").text
        match = re.search(rf'^customer_import_rows_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    before = {outcome: value(outcome) for outcome in ("imported", "failed")}
    import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("MX-1"),
                customer_row("MX-1", contact_email="a@mx.de"),
                customer_row("MX-2", default_currency="?"),
            ]
        ),
    )
    import_ok(client, org, csv_of([customer_row("MX-9")]), dry_run=True)

    assert value("imported") - before["imported"] == 2
    assert value("failed") - before["failed"] == 1
