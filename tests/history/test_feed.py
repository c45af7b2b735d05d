"""API.md §11 (pull): the org's events in commit order; cursors that never skip or repeat; waiting."""

import asyncio
import re
import threading
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_master.auth.models import Role
from customer_master.errors import ValidationFailed
from customer_master.history.service import EVENT_TYPES_PATTERN, parse_types
from tests.conftest import Db, OrgContext, Server, assert_error, create_customer, run_async


def events(client: httpx.Client, org: OrgContext, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/events", params=params, headers=org.headers(Role.INTEGRATOR))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def walk(client: httpx.Client, org: OrgContext, after: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every event after the cursor, page by page (`limit` 2 to cross pages)."""
    seen: list[dict[str, Any]] = []
    while True:
        page = events(client, org, limit=2, **params, **({"after": after} if after else {}))
        seen += page["items"]
        assert page["next_cursor"]
        after = page["next_cursor"]
        if not page["items"]:
            return seen


def test_the_feed_is_the_history_in_order_with_the_event_shape(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@muster.de"}])
    client.patch(f"/api/v1/customers/{customer['id']}", json={"name": "Neu GmbH"}, headers=org.headers())

    feed = walk(client, org)

    assert [e["type"] for e in feed] == ["customer.created", "contact.created", "customer.updated"]
    sequences = [e["sequence"] for e in feed]
    assert sequences == sorted(set(sequences))
    updated = feed[-1]
    assert set(updated) == {"id", "sequence", "type", "occurred_at", "org_id", "data"}
    assert updated["org_id"] == str(org.id)
    assert updated["data"]["changes"] == {"name": {"from": "Muster GmbH", "to": "Neu GmbH"}}
    history = client.get(f"/api/v1/customers/{customer['id']}/history", headers=org.headers()).json()["items"]
    assert history[0]["id"] == updated["id"]
    assert {k: v for k, v in history[0].items() if k not in ("id", "sequence", "type", "occurred_at")} == updated[
        "data"
    ]


def test_after_now_types_and_a_cursor_that_neither_skips_nor_repeats(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, erp_customer_number="1")
    now = events(client, org, after="now")
    assert now["items"] == []
    second = create_customer(client, org, erp_customer_number="2", contacts=[{"email": "b@muster.de"}])
    client.delete(f"/api/v1/customers/{second['id']}", headers=org.headers())

    after_now = walk(client, org, now["next_cursor"])
    assert [e["type"] for e in after_now] == [
        "customer.created",
        "contact.created",
        "contact.deleted",
        "customer.deleted",
    ]
    contacts_only = walk(client, org, now["next_cursor"], types="contact.*")
    assert [e["type"] for e in contacts_only] == ["contact.created", "contact.deleted"]
    deleted = walk(client, org, types="customer.deleted,contact.deleted")
    assert [e["type"] for e in deleted] == ["contact.deleted", "customer.deleted"]
    # An empty page's cursor is the end: nothing new comes before it, nothing old after it.
    end = events(client, org, after=now["next_cursor"], types="customer.merged")
    assert end["items"] == []
    assert events(client, org, after=end["next_cursor"])["items"] == []


def test_bad_parameters_and_roles(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    for params in ({"types": "customer.renamed"}, {"types": "order.*"}, {"after": "abc"}, {"after": "99999999"}):
        response = client.get("/api/v1/events", params=params, headers=org.headers())
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"]["errors"][0]["field"] in ("types", "after")
    for role in (Role.VIEWER, Role.OPS):
        assert_error(client.get("/api/v1/events", headers=org.headers(role)), 403, "FORBIDDEN")
    create_customer(client, other_org)
    assert walk(client, org) == []  # another org's events are not this org's


def test_wait_answers_as_soon_as_an_event_commits(client: httpx.Client, org: OrgContext) -> None:
    cursor = events(client, org, after="now")["next_cursor"]
    started = time.monotonic()
    threading.Timer(0.5, lambda: create_customer(httpx.Client(base_url=str(client.base_url)), org)).start()

    page = events(client, org, after=cursor, wait=20)

    assert [e["type"] for e in page["items"]] == ["customer.created"]
    assert time.monotonic() - started < 10


def test_wait_times_out_with_an_empty_page(client: httpx.Client, org: OrgContext) -> None:
    started = time.monotonic()
    page = events(client, org, after="now", wait=1)
    assert page["items"] == []
    assert 0.9 < time.monotonic() - started < 10


def test_a_transaction_that_commits_late_is_not_skipped(client: httpx.Client, org: OrgContext, server: Server) -> None:
    """Tx A writes first and commits last; a reader between the two commits still gets A afterwards."""

    async def scenario() -> list[str]:
        insert = "INSERT INTO customer (org_id, name, default_currency, default_language) VALUES ($1, $2, 'EUR', 'de')"
        first = await asyncpg.connect(server.database_url)
        second = await asyncpg.connect(server.database_url)
        try:
            early = first.transaction()
            await early.start()
            await first.execute(insert, org.id, "A (began first)")
            async with second.transaction():
                await second.execute(insert, org.id, "B (committed first)")
            between = await asyncio.to_thread(events, client, org)
            await early.commit()
            later = await asyncio.to_thread(walk, client, org, between["next_cursor"])
            return [e["data"]["changes"]["name"]["to"] for e in between["items"] + later]
        finally:
            await first.close()
            await second.close()

    assert run_async(scenario()) == ["B (committed first)", "A (began first)"]


def test_a_cursor_older_than_the_retention_is_gone(client: httpx.Client, org: OrgContext, db: Db) -> None:
    old = create_customer(client, org, erp_customer_number="1")
    create_customer(client, org, erp_customer_number="2")
    old_transaction = "e.org_id = t.org_id AND e.txid = t.txid AND t.org_id = :org AND e.customer_id = :customer"
    ids = {"org": org.id, "customer": uuid.UUID(old["id"])}
    db.execute(
        "UPDATE change_transaction t SET committed_at = now() - interval '91 days'"
        f" FROM change_entry e WHERE {old_transaction}",
        **ids,
    )
    (old_end,) = db.fetch(
        f"SELECT t.last_sequence FROM change_transaction t, change_entry e WHERE {old_transaction}", **ids
    )[0]

    kept = walk(client, org)
    assert [e["data"]["changes"]["erp_customer_number"]["to"] for e in kept] == ["2"]
    assert_error(client.get("/api/v1/events?after=0", headers=org.headers()), 410, "GONE")
    assert [e["type"] for e in walk(client, org, str(old_end))] == ["customer.created"]


@settings(max_examples=200, deadline=None)
@given(types=st.from_regex(EVENT_TYPES_PATTERN.replace("$", r"\Z")))
def test_every_types_value_of_the_declared_pattern_is_taken(types: str) -> None:
    """The OpenAPI document's `types` pattern (from ENTRY_TYPES) says exactly what `parse_types` takes."""
    assert parse_types(types) is not None


@pytest.mark.parametrize("types", ["", "0", "customer", "customer.", "customer.mer.*", "*", ".*", "customer.created,"])
def test_a_types_value_outside_the_pattern_is_a_422(types: str) -> None:
    assert re.fullmatch(EVENT_TYPES_PATTERN, types) is None
    with pytest.raises(ValidationFailed):
        parse_types(types)
