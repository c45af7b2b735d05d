"""S5's in-memory name index: exactly pg_trgm's similarity, and current after every kind of write."""

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection import name_index
from tests.conftest import Db, OrgContext, make_org
from tests.detection.helpers import add_customer, detect
from tests.imports.helpers import blocked_by, csv_of, customer_row, import_ok

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


def test_a_transaction_is_one_step(db: Db, org: OrgContext) -> None:
    async def two_statements() -> None:
        async with db.database.engine.begin() as connection:
            for name in ("Alpha", "Beta"):
                await connection.execute(
                    text(
                        "INSERT INTO customer (org_id, name, default_currency, default_language)"
                        " VALUES (:org, :name, 'EUR', 'de')"
                    ),
                    {"org": org.id, "name": name},
                )

    db.run(two_statements())
    assert version_of(db, org) == 1
    rows = db.fetch("SELECT version FROM customer_name_change WHERE org_id = :org", org=org.id)
    assert [r.version for r in rows] == [1, 1]


def test_an_import_and_an_edit_of_one_customer_do_not_deadlock(db: Db, org: OrgContext) -> None:
    """The import writes a new customer, the edit renames one, then the import reaches the edited one and
    waits for the edit. Were the org's version row locked by the import's first statement, the edit's
    rename would wait for the import too: a deadlock."""
    ids = insert_names(db, org, ["Alpha", "Beta"])
    rename = "UPDATE customer SET name = $2 WHERE id = $1"

    async def interleaved() -> None:
        importer = await asyncpg.connect(db.database.url)
        editor = await asyncpg.connect(db.database.url)
        monitor = await asyncpg.connect(db.database.url)
        try:
            await importer.execute("BEGIN")
            await importer.execute(
                "INSERT INTO customer (org_id, name, default_currency, default_language)"
                " VALUES ($1, 'Gamma', 'EUR', 'de')",
                org.id,
            )
            await editor.execute("BEGIN")
            editing = asyncio.create_task(editor.execute(rename, ids["Alpha"], "Alpha Neu"))
            assert await blocked_by(monitor, importer.get_server_pid(), editing) == [], "the edit waits for the import"
            importing = asyncio.create_task(importer.execute(rename, ids["Alpha"], "Alpha Import"))
            # The import waits for the edit's row lock (and nothing but the import waits for the edit).
            assert await blocked_by(monitor, editor.get_server_pid(), importing) == [importer.get_server_pid()]
            await asyncio.wait_for(editor.execute("COMMIT"), timeout=10)
            await asyncio.wait_for(importing, timeout=10)
            await importer.execute("COMMIT")
        finally:
            await importer.close()
            await editor.close()
            await monitor.close()

    db.run(interleaved())
    assert version_of(db, org) == 3
    (row,) = db.fetch("SELECT name FROM customer WHERE id = :id", id=ids["Alpha"])
    assert row.name == "Alpha Import"


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
    third = make_org(db)
    insert_names(db, third, ["Epsilon"])
    indexes = name_index.NameIndexes()
    monkeypatch.setattr(name_index, "MAX_NAMES", 4)
    loaded(db, org, indexes)
    loaded(db, other_org, indexes)
    loaded(db, org, indexes)  # used again: now other_org is the least recently used
    loaded(db, third, indexes)
    assert indexes.get(OrgId(other_org.id)) is None
    assert indexes.get(OrgId(org.id)) is not None
    assert indexes.get(OrgId(third.id)) is not None


def test_a_copy_behind_the_kept_steps_loads_the_org_anew(db: Db, org: OrgContext) -> None:
    insert_names(db, org, ["Alpha"])
    indexes = name_index.NameIndexes()
    loaded(db, org, indexes)
    for n in range(201):
        insert_names(db, org, [f"Einzeln {n}"])
    names = loaded(db, org, indexes)
    assert (names.written, names.size) == (0, 202)
    assert max(m.similarity for m in names.most_similar(trigrams_of(db, "Einzeln 200"))) == 1.0


def test_another_epoch_loads_the_org_anew(db: Db, org: OrgContext) -> None:
    insert_names(db, org, ["Alpha"])
    indexes = name_index.NameIndexes()
    first = loaded(db, org, indexes)
    db.execute("UPDATE customer_name_version SET epoch = gen_random_uuid() WHERE org_id = :org", org=org.id)
    again = loaded(db, org, indexes)
    assert again is not first
    assert again.epoch != first.epoch


def test_truncating_the_customers_gives_every_org_a_new_epoch(db: Db, org: OrgContext) -> None:
    insert_names(db, org, ["Alpha"])
    before = db.fetch("SELECT epoch FROM customer_name_version WHERE org_id = :org", org=org.id)[0].epoch

    async def truncate_and_look() -> Any:
        async with db.database.engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(text("TRUNCATE customer CASCADE"))
            rows = await connection.execute(
                text("SELECT epoch, version FROM customer_name_version WHERE org_id = :org"), {"org": org.id}
            )
            await transaction.rollback()  # the other tests' customers stay
            return rows.one()

    after = db.run(truncate_and_look())
    assert after.epoch != before
    assert after.version == 0


def test_ids_with_zero_bytes_are_found_changed_and_deleted(db: Db, org: OrgContext) -> None:
    ending = uuid.UUID("00000000-0000-4000-8000-000000000000")  # ends in zero bytes
    inside = uuid.UUID("12340000-0000-4000-8000-0000000000ff")
    db.execute(
        "INSERT INTO customer (id, org_id, name, default_currency, default_language)"
        " VALUES (:a, :org, 'Nullbyte Handel', 'EUR', 'de'), (:b, :org, 'Nullbyte Logistik', 'EUR', 'de')",
        a=ending,
        b=inside,
        org=org.id,
    )
    indexes = name_index.NameIndexes()
    found = {m.customer_id for m in loaded(db, org, indexes).most_similar(trigrams_of(db, "Nullbyte"))}
    assert found == {ending, inside}
    db.execute("UPDATE customer SET name = 'Ganz Anders' WHERE id = :id", id=ending)
    db.execute("DELETE FROM customer WHERE id = :id", id=inside)
    names = loaded(db, org, indexes)
    assert names.most_similar(trigrams_of(db, "Nullbyte")) == []
    assert [m.customer_id for m in names.most_similar(trigrams_of(db, "Ganz Anders"))] == [ending]


def test_a_csv_import_is_seen_by_the_next_detection(client: httpx.Client, org: OrgContext) -> None:
    def names_found(name: str) -> list[str]:
        return sorted(c["name"] for c in detect(client, org, customer_hint={"name": name})["candidates"])

    import_ok(client, org, csv_of([customer_row("1", name="Quelle Katalog GmbH"), customer_row("2", name="Otto Shop")]))
    assert names_found("Quelle Katalog") == ["Quelle Katalog GmbH"]
    import_ok(client, org, csv_of([customer_row("1", name="Neckermann Moden GmbH"), customer_row("3", name="Baur")]))
    assert names_found("Quelle Katalog") == []
    assert names_found("Neckermann Moden") == ["Neckermann Moden GmbH"]
    assert names_found("Baur") == ["Baur"]
