"""`rows.RowValidator` remembers what repeats from row to row; each row's record stays its own."""

import json

from customer_master.imports.rows import STAGING_COLUMNS, RowValidator, parse_header

HEADER = ["name", "erp_customer_number", "default_currency", "default_language", "metadata_a", "metadata_b"]
METADATA = STAGING_COLUMNS.index("metadata")


def test_each_combination_of_metadata_cells_is_its_own_object() -> None:
    validator = RowValidator(parse_header(HEADER, 1))
    cells = [("x", ""), ("", "x"), ("x", ""), ("x", "y"), (" ", "x"), ("", ""), ("x", "y"), ("", "x"), (" y ", "")]
    records = [validator.validate(line, ["A", "K1", "EUR", "de", a, b])[0] for line, (a, b) in enumerate(cells, 2)]

    assert [None if record is None else record[METADATA] for record in records] == [
        json.dumps({"a": "x"}),
        json.dumps({"b": "x"}),
        json.dumps({"a": "x"}),
        json.dumps({"a": "x", "b": "y"}),
        json.dumps({"b": "x"}),
        None,
        json.dumps({"a": "x", "b": "y"}),
        json.dumps({"b": "x"}),
        json.dumps({"a": " y "}),
    ]


def test_a_short_record_has_no_cells_for_the_missing_columns() -> None:
    validator = RowValidator(parse_header(HEADER, 1))
    full, _ = validator.validate(2, ["A", "K1", "EUR", "de", "x", "y"])
    short, _ = validator.validate(3, ["A", "K1", "EUR", "de", "x"])

    assert full is not None
    assert short is not None
    assert (full[METADATA], short[METADATA]) == (json.dumps({"a": "x", "b": "y"}), json.dumps({"a": "x"}))


def test_too_large_metadata_fails_every_row_that_holds_it() -> None:
    validator = RowValidator(parse_header(HEADER, 1))
    big = "ü" * 40_000
    outcomes = [validator.validate(line, ["A", "K1", "EUR", "de", big, "y"]) for line in (2, 3)]

    assert [record for record, _ in outcomes] == [None, None]
    assert [[(e["row"], e["field"]) for e in errors] for _, errors in outcomes] == [
        [(2, "metadata_a")],
        [(3, "metadata_a")],
    ]


CUSTOMER_HEADER = ["name", "erp_customer_number", "default_currency", "default_language", "billing_city"]
CUSTOMER_HEADER += ["shipping_country", "contact_email", "contact_name"]


def test_rows_of_one_customer_each_get_their_own_cells() -> None:
    validator = RowValidator(parse_header(CUSTOMER_HEADER, 1))
    rows = [
        ["A", "K1", "eur", "de-de", "Köln", "at", "a@x.de", "Anna"],
        ["A", "K1", "eur", "de-de", "Köln", "at", "b@x.de", "Bert"],  # the same customer cells
        ["A", "K1", "eur", "de-de", "Bonn", "at", "c@x.de", ""],  # one of them differs
        ["A", "K1", "eur", "de-de", "Bonn", "", "d@x.de"],  # the same as far as written, short
        ["A", "K1", "eur", "de-de", "Bonn", "at", "e@x.de", "Eva"],
    ]
    records = [validator.validate(line, fields)[0] for line, fields in enumerate(rows, 2)]

    assert [None if record is None else record[1:] for record in records] == [
        ("A", "K1", "EUR", "de-DE", None, None, "Köln", None, None, None)
        + (None, None, None, None, None, "AT", "a@x.de", "Anna", None, None),
        ("A", "K1", "EUR", "de-DE", None, None, "Köln", None, None, None)
        + (None, None, None, None, None, "AT", "b@x.de", "Bert", None, None),
        ("A", "K1", "EUR", "de-DE", None, None, "Bonn", None, None, None)
        + (None, None, None, None, None, "AT", "c@x.de", None, None, None),
        ("A", "K1", "EUR", "de-DE", None, None, "Bonn", None, None, None)
        + (None, None, None, None, None, None, "d@x.de", None, None, None),
        ("A", "K1", "EUR", "de-DE", None, None, "Bonn", None, None, None)
        + (None, None, None, None, None, "AT", "e@x.de", "Eva", None, None),
    ]


def test_each_row_of_a_customer_with_a_bad_cell_reports_it() -> None:
    validator = RowValidator(parse_header(CUSTOMER_HEADER, 1))
    rows = [["A", "K1", "EURO", "de", "Köln", "at", f"{name}@x.de", name] for name in ("a", "b")]
    outcomes = [validator.validate(line, fields) for line, fields in enumerate(rows, 2)]

    assert [record for record, _ in outcomes] == [None, None]
    assert [[(e["row"], e["field"], e["value"]) for e in errors] for _, errors in outcomes] == [
        [(2, "default_currency", "EURO")],
        [(3, "default_currency", "EURO")],
    ]
