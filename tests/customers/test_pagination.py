"""Keyset pagination (API.md §1): every matching row exactly once, also while rows are inserted."""

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_master import pagination
from customer_master.errors import ValidationFailed
from tests.conftest import Db, OrgContext, create_customer

SEED_COUNT = 1000
# Mixed case, accents and many equal names, so the order needs the id tie-break.
SEED_SQL = """
INSERT INTO customer (org_id, name, erp_customer_number, default_currency, default_language)
SELECT :org_id,
       (ARRAY['alpha', 'Alpha', 'BETA', 'beta', 'Gamma', 'delta', 'Épsilon', 'zeta'])[1 + i % 8] || ' ' || (i % 40),
       CASE WHEN i % 3 = 0 THEN 'E-' || i END,
       'EUR', 'de-DE'
  FROM generate_series(1, :count) AS i
"""


def seed(db: Db, org: OrgContext) -> list[uuid.UUID]:
    """SEED_COUNT customers in one statement; their ids in the order the API must list them."""
    db.execute(SEED_SQL, org_id=org.id, count=SEED_COUNT)
    return db_order(db, org)


def db_order(db: Db, org: OrgContext) -> list[uuid.UUID]:
    rows = db.fetch("SELECT id FROM customer WHERE org_id = :org_id ORDER BY lower(name), id", org_id=org.id)
    return [row.id for row in rows]


def walk(
    client: httpx.Client, org: OrgContext, limit: int, between_pages: Any = None, **params: Any
) -> list[uuid.UUID]:
    """Every page from the first to the one without next_cursor; the ids in the order served."""
    ids: list[uuid.UUID] = []
    cursor: str | None = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/customers", params=query, headers=org.headers())
        assert response.status_code == 200, response.text
        page = response.json()
        ids.extend(uuid.UUID(item["id"]) for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["items"]) == limit, "only the last page may be short"
        if between_pages is not None:
            between_pages(page)


@pytest.mark.parametrize("limit", [200, 137])
def test_walking_all_pages_while_inserting_returns_every_row_once(
    client: httpx.Client, org: OrgContext, db: Db, limit: int
) -> None:
    pre_existing = seed(db, org)
    inserted: list[str] = []

    def insert_some(page: dict[str, Any]) -> None:
        last_name = page["items"][-1]["name"]
        n = len(inserted)
        for name in (f"aaa new {n}", f"zzz new {n}", last_name, last_name.upper(), f"{last_name} 0"):
            inserted.append(create_customer(client, org, name=name, erp_customer_number=None)["id"])

    served = walk(client, org, limit, insert_some)

    assert inserted, "the walk had more than one page"
    assert len(served) == len(set(served)), "no id is served twice"
    assert [i for i in served if i in set(pre_existing)] == pre_existing, "every pre-existing row once, in order"
    final_order = db_order(db, org)
    served_set = set(served)
    assert [i for i in final_order if i in served_set] == served, "the pages are in (lower(name), id) order"


def test_pages_without_concurrent_writes_cover_the_org_exactly(client: httpx.Client, org: OrgContext, db: Db) -> None:
    pre_existing = seed(db, org)

    assert walk(client, org, 200) == pre_existing
    assert walk(client, org, 125) == pre_existing


def test_a_filtered_walk_returns_every_match_once(client: httpx.Client, org: OrgContext, db: Db) -> None:
    seed(db, org)
    rows = db.fetch(
        "SELECT id FROM customer WHERE org_id = :org_id AND lower(name) LIKE 'alpha%' ORDER BY lower(name), id",
        org_id=org.id,
    )
    expected = [row.id for row in rows]

    assert len(expected) == SEED_COUNT // 4
    assert walk(client, org, 37, q="ALPHA") == expected
    assert walk(client, org, 50, q="epsilon") == walk(client, org, 200, q="Épsilon")


def test_an_empty_org_has_one_empty_page(client: httpx.Client, org: OrgContext) -> None:
    page = client.get("/api/v1/customers", headers=org.headers()).json()
    assert page == {"items": [], "next_cursor": None}


def test_a_cursor_continues_after_its_last_row(client: httpx.Client, org: OrgContext) -> None:
    for index in range(5):
        create_customer(client, org, name=f"K{index}", erp_customer_number=None)
    first = client.get("/api/v1/customers", params={"limit": 2}, headers=org.headers()).json()
    assert [item["name"] for item in first["items"]] == ["K0", "K1"]

    rest = client.get("/api/v1/customers", params={"limit": 3, "cursor": first["next_cursor"]}, headers=org.headers())

    assert rest.status_code == 200
    assert [item["name"] for item in rest.json()["items"]] == ["K2", "K3", "K4"]
    assert rest.json()["next_cursor"] is None


@settings(max_examples=200, deadline=None)
@given(cursor=st.from_regex(pagination.KEYSET_CURSOR_PATTERN.replace("$", r"\Z")))
def test_every_cursor_of_the_declared_shape_is_a_position(cursor: str) -> None:
    """A schema-valid cursor is never refused (issue 14): any text key continues after where it would sort."""
    key, row_id = pagination.decode_cursor(cursor, str)

    assert pagination.encode_cursor(key, row_id).lower() == cursor.lower()


@settings(max_examples=200, deadline=None)
@given(cursor=st.from_regex(pagination.TIME_CURSOR_PATTERN.replace("$", r"\Z")))
def test_every_time_cursor_of_the_declared_shape_is_a_position(cursor: str) -> None:
    at, row_id = pagination.decode_time_cursor(cursor)

    assert pagination.decode_time_cursor(pagination.encode_time_cursor(at, row_id)) == (at, row_id)


@pytest.mark.parametrize(
    "cursor",
    ["", "~x", "not-a-uuid~x", "3f2c0f9e-5a7c-4f3e-9a59-55d3b7f0c001", "3f2c0f9e-5a7c-4f3e-9a59-55d3b7f0c001~a\x00"],
)
def test_a_cursor_of_another_shape_is_a_422(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        pagination.decode_cursor(cursor, str)
    with pytest.raises(ValidationFailed):
        pagination.decode_time_cursor(cursor.replace("~a", "~1a"))
