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
