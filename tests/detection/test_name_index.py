"""S5's in-memory name index: exactly pg_trgm's similarity, and current after every kind of write."""

import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection import name_index
from tests.conftest import Db, OrgContext, make_org
from tests.detection.helpers import add_customer, detect

T = TypeVar("T")

# Names that exercise pg_trgm's trigram rules: words of letters and digits only, non-ASCII letters (shown
# by show_trgm as 0x…), legal forms, single letters, digits, repeated words, nothing but punctuation.
CORPUS = [
    "Müller Metallbau GmbH",
    "Mueller Metallbau",
    "Metallbau Müller & Söhne KG",
    "Schmidt Metallbau Köln",
    "Bäckerei Schulz e.K.",
    "Baeckerei Schultz",
    "Schulz & Schulz GmbH & Co. KG",
    "A & B Handel",
    "AB Handel AG",
    "3M Deutschland GmbH",
    "123 Logistik",
    "Москва Торг ООО",
    "Московская Торговля",
    "東京商事株式会社",
    "Ωmega Δelta Trading Ltd",
    "Çelik İnşaat A.Ş.",
    "Ærø Fisk ApS",
    "Café ☕ Rösterei",
    "GmbH",
    "---",
    "x",
    "Elektro Weber",
    "Elektro-Weber Haustechnik",
    "Weber Elektro",
    "Druckerei Niener & Wolf AG",
    "Niener Druck",
]
QUERIES = [
    "Mueller Metallbau GmbH",
    "Metallbau",
    "Bäckerei Schulz",
    "Schulz",
    "A B",
    "3M",
    "Москва",
    "Торговля Москва",
    "東京商事",
    "Omega Delta",
    "Celik Insaat",
    "Aero Fisk",
    "Cafe Roesterei",
    "Elektro Weber GmbH",
    "Weber",
    "Druckerei Niener und Wolf",
    "Bahnhofstraße 12",
    "x",
]


def on_connection(db: Db, work: Callable[[Any, Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(session, asyncpg connection)` in one transaction on the server's loop and engine."""

    async def run() -> T:
        async with db.database.transaction() as session:
            return await work(session, await driver_connection(session))

    return db.run(run())


def insert_names(db: Db, org: OrgContext, names: list[str]) -> dict[str, uuid.UUID]:
    """Customers with these names, in one statement (committed); their ids by name."""

    async def insert() -> dict[str, uuid.UUID]:
        async with db.database.engine.begin() as connection:
            rows = await connection.execute(
                text(
                    "INSERT INTO customer (org_id, name, default_currency, default_language)"
                    " SELECT :org, n, 'EUR', 'de' FROM unnest(CAST(:names AS text[])) AS n RETURNING name, id"
                ),
                {"org": org.id, "names": names},
            )
            return {row.name: row.id for row in rows}

    return db.run(insert())


def trigrams_of(db: Db, text: str) -> list[str]:
    (row,) = db.fetch("SELECT show_trgm(cm_company_key(:text)) AS trigrams", text=text)
    trigrams: list[str] = row.trigrams
    return trigrams


def loaded(db: Db, org: OrgContext, indexes: name_index.NameIndexes | None = None) -> name_index.OrgNames:
    """The org's names as a request would find them: through the server's indexes unless others are given."""

    async def work(session: Any, conn: Any) -> name_index.OrgNames:
        row = await conn.fetchrow("SELECT version, epoch FROM customer_name_version WHERE org_id = $1", org.id)
        chosen = indexes or name_index.indexes_for(session)
        return await chosen.current(conn, OrgId(org.id), row and row["epoch"], row["version"] if row else 0)

    return on_connection(db, work)


def sql_matches(db: Db, org: OrgContext, text: str) -> dict[uuid.UUID, float]:
    rows = db.fetch(
        "SELECT id, similarity(name_key, cm_company_key(:text)) AS sim FROM customer"
        " WHERE org_id = :org AND similarity(name_key, cm_company_key(:text)) >= 0.3",
        org=org.id,
        text=text,
    )
    return {row.id: row.sim for row in rows}


def version_of(db: Db, org: OrgContext) -> int:
    rows = db.fetch("SELECT version FROM customer_name_version WHERE org_id = :org", org=org.id)
    return rows[0].version if rows else 0


def test_matches_and_similarities_are_pg_trgms(db: Db, org: OrgContext) -> None:
    insert_names(db, org, CORPUS)
    names = loaded(db, org, name_index.NameIndexes())
    matched = 0
    for query in QUERIES + CORPUS:
        found = {m.customer_id: m.similarity for m in names.most_similar(trigrams_of(db, query), limit=1000)}
        assert found == sql_matches(db, org, query), query
        matched += bool(found)
    assert matched >= len(QUERIES + CORPUS) - 5


def test_customers_written_after_the_load_match_like_the_loaded_ones(db: Db, org: OrgContext) -> None:
    insert_names(db, org, CORPUS[:10])
    indexes = name_index.NameIndexes()
    loaded(db, org, indexes)
    for name in CORPUS[10:]:  # one statement each: the index catches up step by step
        insert_names(db, org, [name])
    names = loaded(db, org, indexes)
    assert names.written == len(CORPUS) - 10
    for query in QUERIES:
        found = {m.customer_id: m.similarity for m in names.most_similar(trigrams_of(db, query), limit=1000)}
        assert found == sql_matches(db, org, query), query
    assert names.most_similar(trigrams_of(db, "Москва"))


def test_the_five_most_similar_come_with_everything_tied_with_the_fifth(db: Db, org: OrgContext) -> None:
    ids = insert_names(db, org, ["Weber Elektro", *(f"Weber {c}" for c in "ABCDEFG"), "Webermann"])
    names = loaded(db, org, name_index.NameIndexes())
    found = {m.customer_id: m.similarity for m in names.most_similar(trigrams_of(db, "Weber"))}
    # "Weber X" shares Weber's 6 trigrams and adds 2 of its letter's: 6 / 8 = 0.75 for each of the seven.
    assert found == {ids[f"Weber {c}"]: 0.75 for c in "ABCDEFG"}


def test_an_orgs_index_holds_only_its_own_names(db: Db, org: OrgContext, other_org: OrgContext) -> None:
    insert_names(db, other_org, ["Müller Metallbau GmbH"])
    mine = insert_names(db, org, ["Müller Metallbau GmbH"])
    names = loaded(db, org, name_index.NameIndexes())
    assert [m.customer_id for m in names.most_similar(trigrams_of(db, "Müller Metallbau"))] == list(mine.values())


# --- the version: moved by the transaction that changes a name ---------------------------------------


def test_every_statement_that_changes_names_is_one_step(db: Db, org: OrgContext) -> None:
    assert version_of(db, org) == 0
    ids = insert_names(db, org, ["Alpha", "Beta", "Gamma"])
    assert version_of(db, org) == 1
    db.execute("UPDATE customer SET default_currency = 'CHF' WHERE org_id = :org", org=org.id)
    assert version_of(db, org) == 1, "a change that leaves every name as it was is no step"
    db.execute("UPDATE customer SET name = upper(name) WHERE org_id = :org", org=org.id)
    assert version_of(db, org) == 1, "the same key (case folded) is no step"
    db.execute("UPDATE customer SET name = 'Delta' WHERE id = :id", id=ids["Beta"])
    db.execute("DELETE FROM customer WHERE id = :id", id=ids["Gamma"])
    assert version_of(db, org) == 3
    changes = db.fetch(
        "SELECT version, customer_id FROM customer_name_change WHERE org_id = :org ORDER BY version, customer_id",
        org=org.id,
    )
    assert [(c.version, c.customer_id) for c in changes] == [
        *sorted((1, i) for i in ids.values()),
        (2, ids["Beta"]),
        (3, ids["Gamma"]),
    ]


def test_a_large_step_is_noted_as_one_row_and_old_steps_are_dropped(db: Db, org: OrgContext) -> None:
    insert_names(db, org, [f"Kunde {n}" for n in range(1001)])
    rows = db.fetch("SELECT version, customer_id FROM customer_name_change WHERE org_id = :org", org=org.id)
    assert [(r.version, r.customer_id) for r in rows] == [(1, None)]
    for n in range(205):
        insert_names(db, org, [f"Einzeln {n}"])
    (row,) = db.fetch(
        "SELECT min(version) AS oldest, max(version) AS newest FROM customer_name_change WHERE org_id = :org",
        org=org.id,
    )
    assert (row.oldest, row.newest) == (7, 206)


def test_the_orgs_other_tables_go_with_the_org(db: Db) -> None:
    org = make_org(db)
    insert_names(db, org, ["Alpha"])
    db.execute("DELETE FROM customer WHERE org_id = :org", org=org.id)
    for table in ("api_token", "app_user"):
        db.execute(f"DELETE FROM {table} WHERE org_id = :org", org=org.id)
    db.execute("DELETE FROM org WHERE id = :org", org=org.id)
    assert version_of(db, org) == 0
    assert not db.fetch("SELECT 1 FROM customer_name_change WHERE org_id = :org", org=org.id)


# --- current through the API: every write is seen by the next detection ----------------------------


def test_detection_sees_every_write_at_once(client: httpx.Client, db: Db, org: OrgContext) -> None:
    def names_found(name: str) -> list[str]:
        return sorted(c["name"] for c in detect(client, org, customer_hint={"name": name})["candidates"])

    alpha = add_customer(client, org, "Alpha Zeta Logistik GmbH")
    assert names_found("Alpha Zeta Logistik") == ["Alpha Zeta Logistik GmbH"]  # loads the org
    add_customer(client, org, "Alpha Zeta Logistics AG")
    assert names_found("Alpha Zeta Logistik") == ["Alpha Zeta Logistics AG", "Alpha Zeta Logistik GmbH"]
    response = client.patch(f"/api/v1/customers/{alpha}", json={"name": "Omega Bau"}, headers=org.headers())
    assert response.status_code == 200, response.text
    assert names_found("Alpha Zeta Logistik") == ["Alpha Zeta Logistics AG"]
    assert names_found("Omega Bau") == ["Omega Bau"]
    assert client.delete(f"/api/v1/customers/{alpha}", headers=org.headers()).status_code == 204
    assert names_found("Omega Bau") == []
    names = loaded(db, org)
    assert (names.version, names.written) == (version_of(db, org), 1), "caught up, not loaded anew"


def test_a_large_change_loads_the_org_anew(client: httpx.Client, db: Db, org: OrgContext) -> None:
    add_customer(client, org, "Alpha Zeta Logistik GmbH")
    detect(client, org, customer_hint={"name": "Alpha"})
    insert_names(db, org, [f"Import Kunde {n}" for n in range(1000)] + ["Alpha Zeta Logistik Nord"])
    result = detect(client, org, customer_hint={"name": "Alpha Zeta Logistik Nord"})
    assert "Alpha Zeta Logistik Nord" in [c["name"] for c in result["candidates"]]
    names = loaded(db, org)
    assert (names.version, names.written, names.size) == (version_of(db, org), 0, 1002)


def test_many_small_changes_load_the_org_anew(
    client: httpx.Client, db: Db, org: OrgContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(name_index, "MAX_WRITTEN", 3)
    insert_names(db, org, ["Alpha"])
    detect(client, org, customer_hint={"name": "Alpha"})
    for name in ("Nordlicht Optik", "Südwind Segel", "Ostwerk Metall", "Westend Druck"):
        insert_names(db, org, [name])
    result = detect(client, org, customer_hint={"name": "Westend Druck"})
    assert [c["name"] for c in result["candidates"]] == ["Westend Druck"]
    assert loaded(db, org).written == 0


def test_the_least_recently_used_orgs_leave_memory_first(
    db: Db, org: OrgContext, other_org: OrgContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_names(db, org, ["Alpha", "Beta"])
    insert_names(db, other_org, ["Gamma", "Delta"])
    indexes = name_index.NameIndexes()
    monkeypatch.setattr(name_index, "MAX_NAMES", 3)
    loaded(db, org, indexes)
    loaded(db, other_org, indexes)
    assert indexes.get(OrgId(org.id)) is None
    assert indexes.get(OrgId(other_org.id)) is not None
