"""Reading the file (API.md §6 "Reading"): encodings, delimiters, the header, and files rejected whole."""

import io

import httpx
import pytest

from customer_master.imports.reader import CsvReader, FileRejected
from tests.conftest import Db, OrgContext, assert_error
from tests.imports.helpers import HEADER, count_customers, customer_by_erp, import_ok, post_csv, warning


def rejected(client: httpx.Client, org: OrgContext, content: str | bytes) -> dict[str, object]:
    error = assert_error(post_csv(client, org, content), 422, "VALIDATION_ERROR")
    return error


@pytest.mark.parametrize(
    ("content", "line", "says"),
    [
        pytest.param(b"", None, "empty", id="zero-bytes"),
        pytest.param(b"  \r\n\t\n   \n", None, "empty", id="only-whitespace"),
        pytest.param(b"\xef\xbb\xbf\r\n", None, "empty", id="only-a-bom"),
        pytest.param((HEADER + "\nA GmbH,1,EUR,de\nB Gm\x00bH,2,EUR,de\n").encode(), 3, "NUL", id="nul-byte-on-line-3"),
        pytest.param(
            (HEADER + '\nA GmbH,1,EUR,de\n"B GmbH,2,EUR,de\nC GmbH,3,EUR,de\n').encode(),
            3,
            "unterminated quoted field",
            id="unterminated-quote",
        ),
        pytest.param(
            (HEADER + "\nA GmbH,1,EUR,de\nB GmbH,2,EUR,de,extra\n").encode(),
            3,
            "5 fields but the header has 4",
            id="more-fields-than-header",
        ),
        pytest.param(
            (HEADER + '\n"A ""x"" GmbH",1,EUR,de\n"B" GmbH,2,EUR,de\n').encode(),
            3,
            "malformed quoted field",
            id="text-after-closing-quote",
        ),
    ],
)
def test_a_file_that_is_not_csv_is_rejected_whole_saying_why_and_where(
    client: httpx.Client, db: Db, org: OrgContext, content: bytes, line: int | None, says: str
) -> None:
    error = rejected(client, org, content)

    (problem,) = error["details"]["errors"]  # type: ignore[index]
    assert problem["field"] is None
    assert says in problem["reason"]
    assert problem["line"] == line
    if line is not None:
        assert f"Line {line}" in error["message"]  # type: ignore[operator]
    assert count_customers(db, org) == 0, "nothing of a rejected file is applied"
    runs = client.get("/api/v1/imports", headers=org.headers()).json()["items"]
    assert runs == [], "a file rejected whole is not recorded as an import"


def test_a_line_longer_than_the_limit_rejects_the_file(client: httpx.Client, db: Db, org: OrgContext) -> None:
    long_name = "A" * 1_100_000  # the default limit is 1,048,576 characters a line
    error = rejected(client, org, f"{HEADER}\nOK GmbH,1,EUR,de\n{long_name},2,EUR,de\n")

    (problem,) = error["details"]["errors"]  # type: ignore[index]
    assert problem["line"] == 3
    assert "longer than 1048576 characters" in problem["reason"]
    assert count_customers(db, org) == 0


def test_the_line_limit_is_configurable_and_counts_characters_without_the_line_break() -> None:
    exactly = "x" * 1024  # with ",EUR,de": exactly 1031 characters
    reader = CsvReader(
        io.BytesIO(f"name,default_currency,default_language\r\n{exactly},EUR,de\r\n".encode()), max_line_length=1031
    )
    assert [fields for _, fields in reader.records()] == [[exactly, "EUR", "de"]]

    too_long = CsvReader(
        io.BytesIO(f"name,default_currency,default_language\n{exactly}x,EUR,de\n".encode()), max_line_length=1031
    )
    with pytest.raises(FileRejected) as caught:
        list(too_long.records())
    assert caught.value.line == 2


def test_a_missing_required_column_is_named(client: httpx.Client, org: OrgContext) -> None:
    error = rejected(client, org, "name;erp_customer_number\nA GmbH;1\n")

    fields = {problem["field"] for problem in error["details"]["errors"]}  # type: ignore[index]
    assert fields == {"default_currency", "default_language"}
    assert "default_currency" in error["message"]  # type: ignore[operator]


def test_a_column_given_twice_rejects_the_file(client: httpx.Client, org: OrgContext) -> None:
    error = rejected(client, org, HEADER + ",Name\nA GmbH,1,EUR,de,B GmbH\n")

    assert "name appears twice" in error["message"]  # type: ignore[operator]


def test_a_header_without_records_imports_nothing(client: httpx.Client, db: Db, org: OrgContext) -> None:
    report = import_ok(client, org, HEADER + "\r\n\r\n")

    assert {key: report[key] for key in ("rows", "imported", "updated", "unchanged", "failed")} == dict.fromkeys(
        ("rows", "imported", "updated", "unchanged", "failed"), 0
    )
    assert report["errors"] == []
    assert report["warnings"] == []
    assert count_customers(db, org) == 0


@pytest.mark.parametrize(("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab")])
def test_the_delimiter_is_detected_and_reported(
    client: httpx.Client, org: OrgContext, delimiter: str, name: str
) -> None:
    header = delimiter.join(["name", "erp_customer_number", "default_currency", "default_language", "billing_city"])
    row = delimiter.join([f'"Komma, Semikolon; {name}"', "D-1", "EUR", "de-DE", "Köln"])

    report = import_ok(client, org, f"{header}\n{row}\n")

    assert report["delimiter"] == delimiter
    assert report["imported"] == 1
    customer = customer_by_erp(client, org, "D-1")
    assert customer["name"] == f"Komma, Semikolon; {name}"
    assert customer["billing_address"]["city"] == "Köln"


def test_windows_1252_is_read_when_the_file_is_not_utf8(client: httpx.Client, org: OrgContext) -> None:
    content = "name;erp_customer_number;default_currency;default_language;billing_street\n"
    content += "Müller & Söhne GmbH;W-1;EUR;de-DE;Große Straße 5 – Hof\n"

    report = import_ok(client, org, content.encode("cp1252"))

    assert report["encoding"] == "windows-1252"
    customer = customer_by_erp(client, org, "W-1")
    assert customer["name"] == "Müller & Söhne GmbH"
    assert customer["billing_address"]["street"] == "Große Straße 5 – Hof"


def test_an_umlaut_only_on_the_last_line_still_decides_the_encoding(client: httpx.Client, org: OrgContext) -> None:
    lines = [HEADER] + [f"Firma {number},E-{number},EUR,de" for number in range(3000)] + ["Jörg KG,E-last,EUR,de"]

    report = import_ok(client, org, ("\n".join(lines) + "\n").encode("cp1252"))

    assert report["encoding"] == "windows-1252"
    assert customer_by_erp(client, org, "E-last")["name"] == "Jörg KG"


def test_utf8_with_and_without_bom(client: httpx.Client, org: OrgContext) -> None:
    with_bom = "\ufeff" + HEADER + "\nÄrger GmbH,B-1,EUR,de\n"
    without_bom = HEADER + "\nÖl AG,B-2,EUR,de\n"

    first, second = import_ok(client, org, with_bom), import_ok(client, org, without_bom)

    assert first["encoding"] == second["encoding"] == "utf-8"
    assert first["imported"] == second["imported"] == 1, "the BOM is not part of the first column's name"
    assert customer_by_erp(client, org, "B-1")["name"] == "Ärger GmbH"
    assert customer_by_erp(client, org, "B-2")["name"] == "Öl AG"


def test_header_names_are_case_insensitive_and_trimmed(client: httpx.Client, org: OrgContext) -> None:
    content = " NAME ;Erp_Customer_Number; Default_Currency ;DEFAULT_LANGUAGE;Billing_Country;Metadata_Rabatt\n"
    content += "Groß GmbH;H-1;chf;de-ch;ch;10%\n"

    report = import_ok(client, org, content)

    assert report["imported"] == 1
    assert report["warnings"] == []
    customer = customer_by_erp(client, org, "H-1")
    assert (customer["default_currency"], customer["default_language"]) == ("CHF", "de-CH")
    assert customer["billing_address"]["country"] == "CH"
    assert customer["metadata"] == {"Rabatt": "10%"}, "the metadata key keeps the case it was written in"


def test_unknown_columns_are_ignored_with_one_warning_naming_them_all(client: httpx.Client, org: OrgContext) -> None:
    report = import_ok(client, org, HEADER + ",phone,fax\nA GmbH,U-1,EUR,de,0891234,0895678\n")

    assert report["imported"] == 1
    assert warning(report, "UNKNOWN_COLUMNS") == {
        "code": "UNKNOWN_COLUMNS",
        "rows": [],
        "warning": "ignored columns: phone, fax",
    }


def test_quoted_fields_keep_delimiters_quotes_and_newlines(client: httpx.Client, org: OrgContext) -> None:
    content = HEADER + ',billing_street\n"Kunde ""Spezial"", GmbH",Q-1,EUR,de,"Hof 3\nEingang B; links"\n'

    report = import_ok(client, org, content)

    assert report["rows"] == 1
    customer = customer_by_erp(client, org, "Q-1")
    assert customer["name"] == 'Kunde "Spezial", GmbH'
    assert customer["billing_address"]["street"] == "Hof 3\nEingang B; links"


def test_blank_lines_and_short_records_are_accepted(client: httpx.Client, org: OrgContext) -> None:
    content = HEADER + ",billing_city\n\nA GmbH,S-1,EUR,de\n,,,,\nB GmbH,S-2,EUR,de,Wien\n\n"

    report = import_ok(client, org, content)

    assert (report["rows"], report["imported"], report["failed"]) == (2, 2, 0)
    assert customer_by_erp(client, org, "S-1")["billing_address"] is None
