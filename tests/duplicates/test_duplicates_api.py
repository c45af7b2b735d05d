"""Possible duplicates (API.md §12): reasons and scores, order and paging, dismissal, tombstones, roles."""

import uuid
from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from customer_master.detection import scoring, signals
from tests.conftest import Db, OrgContext, assert_error
from tests.customers.helpers import error_fields
from tests.detection.helpers import add_customer, unique_domain


def duplicates(client: httpx.Client, org: OrgContext, role: Role = Role.VIEWER, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/duplicates", params=params, headers=org.headers(role))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def pairs(client: httpx.Client, org: OrgContext, **params: Any) -> list[tuple[str, str]]:
    return [(p["customers"][0]["id"], p["customers"][1]["id"]) for p in duplicates(client, org, **params)["items"]]


def pair_of(a: str, b: str) -> tuple[str, str]:
    return (a, b) if uuid.UUID(a) < uuid.UUID(b) else (b, a)


def dismiss(client: httpx.Client, org: OrgContext, ids: Any, role: Role = Role.INTEGRATOR) -> httpx.Response:
    return client.post("/api/v1/duplicates/dismiss", json={"customer_ids": ids}, headers=org.headers(role))


def sql_similarity(db: Db, a: str, b: str) -> float:
    return float(db.fetch("SELECT similarity(cm_company_key(:a), cm_company_key(:b))", a=a, b=b)[0][0])


def test_a_shared_email_is_a_pair_of_095_lower_id_first(client: httpx.Client, org: OrgContext) -> None:
    domain = unique_domain()
    a = add_customer(client, org, "Alpenglühen Feinkost GmbH", "A-1", (f"einkauf@{domain}",))
    b = add_customer(client, org, "Zeppelin Werkzeuge KG", "B-1", (f"einkauf@{domain}",))

    page = duplicates(client, org)

    assert page["next_cursor"] is None
    [item] = page["items"]
    low, high = pair_of(a, b)
    assert [c["id"] for c in item["customers"]] == [low, high]
    assert {c["erp_customer_number"] for c in item["customers"]} == {"A-1", "B-1"}
    assert {c["name"] for c in item["customers"]} == {"Alpenglühen Feinkost GmbH", "Zeppelin Werkzeuge KG"}
    assert item["score"] == 0.95
    assert item["reasons"] == [{"signal": "SAME_EMAIL", "value": f"einkauf@{domain}"}]


def test_a_shared_domain_scores_075_and_with_a_similar_name_more(client: httpx.Client, org: OrgContext, db: Db) -> None:
    domain, other = unique_domain(), unique_domain()
    a = add_customer(client, org, "Brenner Maschinenbau GmbH", None, (f"einkauf@{domain}",))
    b = add_customer(client, org, "Brenner Maschinenbau Nord", None, (f"lager@{domain}",))
    c = add_customer(client, org, "Quellwasser Getränke AG", None, (f"info@{other}",))
    d = add_customer(client, org, "Yorck Spedition", None, (f"buero@{other}",))
    sim = sql_similarity(db, "Brenner Maschinenbau GmbH", "Brenner Maschinenbau Nord")
    assert 0.5 <= sim < 1

    items = duplicates(client, org, min_score=0.7)["items"]

    by_pair = {(i["customers"][0]["id"], i["customers"][1]["id"]): i for i in items}
    assert set(by_pair) == {pair_of(a, b), pair_of(c, d)}
    named = by_pair[pair_of(a, b)]
    assert named["score"] == scoring.combine([signals.S2_DOMAIN, signals.name_score(sim)])
    assert named["reasons"] == [
        {"signal": "SAME_DOMAIN", "value": domain},
        {"signal": "SIMILAR_NAME", "value": str(round(sim, 4))},
    ]
    assert by_pair[pair_of(c, d)]["score"] == 0.75
    assert by_pair[pair_of(c, d)]["reasons"] == [{"signal": "SAME_DOMAIN", "value": other}]
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    # 0.75 is below the default
    assert pairs(client, org) == [pair_of(a, b)]


def test_a_shared_email_leaves_out_the_shared_domain(client: httpx.Client, org: OrgContext) -> None:
    domain = unique_domain()
    a = add_customer(client, org, "Ostwind Logistik", None, (f"einkauf@{domain}", f"lager@{domain}"))
    b = add_customer(client, org, "Ostwind Logistik GmbH", None, (f"einkauf@{domain}",))

    [item] = duplicates(client, org)["items"]

    assert (item["customers"][0]["id"], item["customers"][1]["id"]) == pair_of(a, b)
    assert item["reasons"] == [
        {"signal": "SAME_EMAIL", "value": f"einkauf@{domain}"},
        {"signal": "SIMILAR_NAME", "value": "1.0"},
    ]
    assert item["score"] == scoring.combine([signals.S1_EMAIL, signals.S5_MAX])


def test_public_mail_domains_never_count(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Hummel Bäckerei", None, ("hummel.baeckerei@gmx.de",))
    add_customer(client, org, "Tannenhof Käserei", None, ("tannenhof@gmx.de",))
    add_customer(client, org, "Rabe Optik", None, ("rabe@mail-extra.example",))
    add_customer(client, org, "Zander Holz", None, ("zander@mail-extra.example",))
    assert len(pairs(client, org, min_score=0)) == 1  # the org's extra domain still counts

    patch = {"customer_detection": {"public_domains_extra": ["mail-extra.example"]}}
    assert client.patch("/api/v1/org/settings", json=patch, headers=org.headers()).status_code == 200

    assert pairs(client, org, min_score=0) == []


def test_similar_names_alone_score_as_detection_does(client: httpx.Client, org: OrgContext, db: Db) -> None:
    a = add_customer(client, org, "Müller Holzbau GmbH")
    b = add_customer(client, org, "Mueller Holzbau AG")  # another legal form, a spelling
    c = add_customer(client, org, "Müller Holzbau GmbH & Co. KG")
    add_customer(client, org, "Müller Elektro GmbH")  # a near-namesake, not a duplicate
    add_customer(client, org, "Schmitt Elektro Bau")

    items = duplicates(client, org, min_score=0, limit=200)["items"]

    found = {(i["customers"][0]["id"], i["customers"][1]["id"]): i for i in items}
    expected = {pair_of(a, c): 1.0, pair_of(a, b): None, pair_of(b, c): None}
    assert set(found) == set(expected)
    for (low, high), item in found.items():
        name = {a: "Müller Holzbau GmbH", b: "Mueller Holzbau AG", c: "Müller Holzbau GmbH & Co. KG"}
        sim = sql_similarity(db, name[low], name[high])
        assert item["reasons"] == [{"signal": "SIMILAR_NAME", "value": str(round(sim, 4))}]
        assert item["score"] == signals.name_score(sim)
    assert pairs(client, org, min_score=0.85) == [pair_of(a, c)]


def test_pairs_are_ordered_and_walking_the_pages_lists_each_once(client: httpx.Client, org: OrgContext) -> None:
    domain = unique_domain()
    shared = [add_customer(client, org, f"Firma {word}", None, (f"einkauf@{domain}",)) for word in "ABCD"]
    named = [add_customer(client, org, f"Sonnenschein Gartenbau {i}") for i in range(4)]
    assert len(shared + named) == 8

    everything = duplicates(client, org, min_score=0, limit=200)["items"]
    keys = [(-i["score"], i["customers"][0]["id"], i["customers"][1]["id"]) for i in everything]
    assert keys == sorted(keys, key=lambda k: (k[0], uuid.UUID(k[1]), uuid.UUID(k[2])))
    assert len(everything) >= 6 + 6  # the e-mail group's 6 pairs and the names' 6

    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"min_score": 0, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = duplicates(client, org, **params)
        walked.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_score": "-0.1"}, "min_score"),
        ({"min_score": "1.01"}, "min_score"),
        ({"min_score": "nan"}, "min_score"),
        ({"min_score": "high"}, "min_score"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "not a cursor!"}, "cursor"),
        ({"cursor": "WyJ4IiwgIjEiXQ"}, "cursor"),
    ],
)
def test_bad_queries_are_422(client: httpx.Client, org: OrgContext, params: dict[str, str], field: str) -> None:
    response = client.get("/api/v1/duplicates", params=params, headers=org.headers())
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error_fields(error) == {field}


def test_a_dismissed_pair_is_never_listed_again(client: httpx.Client, org: OrgContext) -> None:
    domain = unique_domain()
    a = add_customer(client, org, "Kranich Reisen", None, (f"info@{domain}",))
    b = add_customer(client, org, "Kranich Reisen GmbH", None, (f"info@{domain}",))
    c = add_customer(client, org, "Kranich Reisen AG", None, (f"info@{domain}",))
    assert len(pairs(client, org)) == 3

    assert dismiss(client, org, [max(a, b), min(a, b)]).status_code == 204  # either order
    assert dismiss(client, org, [a, b], role=Role.ADMIN).status_code == 204  # twice is fine

    assert set(pairs(client, org, min_score=0)) == {pair_of(a, c), pair_of(b, c)}
    assert dismiss(client, org, [c, a]).status_code == 204
    assert pairs(client, org, min_score=0) == [pair_of(b, c)]


def test_only_integrators_and_admins_dismiss(client: httpx.Client, org: OrgContext) -> None:
    a = add_customer(client, org, "Eule Druck")
    b = add_customer(client, org, "Eule Druck GmbH")
    for role in (Role.VIEWER, Role.OPS):
        assert_error(dismiss(client, org, [a, b], role=role), 403, "FORBIDDEN")
        assert duplicates(client, org, role=role)["items"]  # but every role lists
    assert len(pairs(client, org)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"customer_ids": []},
        {"customer_ids": ["{a}"]},
        {"customer_ids": ["{a}", "{a}"]},
        {"customer_ids": ["{a}", "{b}", "{a}"]},
        {"customer_ids": ["{a}", "not-a-uuid"]},
        {"customer_ids": "{a}"},
        {"customer_ids": ["{a}", "{b}"], "reason": "x"},
        {},
    ],
)
def test_a_bad_dismissal_is_422(client: httpx.Client, org: OrgContext, body: dict[str, Any]) -> None:
    a, b = add_customer(client, org, "Fuchs Bau"), add_customer(client, org, "Fuchs Bau KG")
    filled = {k: [i.format(a=a, b=b) for i in v] if isinstance(v, list) else v.format(a=a) for k, v in body.items()}

    response = client.post("/api/v1/duplicates/dismiss", json=filled, headers=org.headers())

    assert_error(response, 422, "VALIDATION_ERROR")
    assert len(pairs(client, org)) == 1


def test_another_orgs_or_an_unknown_customer_is_404(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    mine = add_customer(client, org, "Wiesel Technik")
    theirs = [add_customer(client, other_org, "Wiesel Technik"), add_customer(client, other_org, "Wiesel Technik AG")]

    for ids in ([mine, theirs[0]], theirs, [mine, str(uuid.uuid4())]):
        assert_error(dismiss(client, org, ids), 404, "NOT_FOUND")
    assert pairs(client, org, min_score=0) == []  # nor are another org's pairs listed
    assert pairs(client, other_org) == [pair_of(*theirs)]
    assert pairs(client, other_org, min_score=0) == [pair_of(*theirs)]


def test_merged_customers_are_in_no_pair(client: httpx.Client, org: OrgContext, db: Db) -> None:
    domain = unique_domain()
    survivor = add_customer(client, org, "Möwe Fischhandel GmbH", "M-1", (f"einkauf@{domain}",))
    merged = add_customer(client, org, "Möwe Fischhandel", "M-2", (f"einkauf@{domain}", f"lager@{domain}"))
    other = add_customer(client, org, "Möwe Fischhandel AG", "M-3")
    assert len(pairs(client, org)) == 3

    db.execute("DELETE FROM customer_contact WHERE customer_id = :id", id=merged)
    db.execute("UPDATE customer SET merged_into = :s, erp_customer_number = NULL WHERE id = :id", s=survivor, id=merged)

    assert pairs(client, org, min_score=0) == [pair_of(survivor, other)]
    error = assert_error(dismiss(client, org, [merged, other]), 404, "NOT_FOUND")
    assert error["details"]["merged_into"] == survivor
