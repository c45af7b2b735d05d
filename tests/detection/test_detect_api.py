"""`POST /api/v1/customers/detect` (API.md §7) against a real server and database."""

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import OrgContext, assert_error
from tests.detection.helpers import add_customer, detect, signals_of

ORDER_TEXT = """Bestellung 2026-1187
Datum: 26.11.2026
Lieferung bitte bis KW 50

Pos. Artikel Menge
1 Schrauben M8 500
Kundennr.: {number}
Mit freundlichen Grüßen
"""


# --- S1 / S2: the sender -----------------------------------------------------------------------


def test_exact_sender_is_s1_and_auto_selected(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", "4711", ("einkauf@muster.de", "lager@muster.de"))
    result = detect(client, org, from_email='"Max Mustermann" <Einkauf@Muster.DE>')
    assert result["status"] == "AUTO_SELECTED"
    assert result["selected_customer_id"] == muster
    (candidate,) = result["candidates"]
    assert candidate["customer_id"] == muster
    assert candidate["name"] == "Muster GmbH"
    assert candidate["erp_customer_number"] == "4711"
    assert candidate["score"] == 0.95
    assert signals_of(candidate) == [("S1_EMAIL", 0.95, "einkauf@muster.de")]  # no S2 beside S1


def test_sender_on_a_contacts_domain_is_s2(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", None, ("einkauf@muster.de",))
    result = detect(client, org, from_email="  Chef@MUSTER.de.  ")
    assert result["status"] == "AMBIGUOUS"  # 0.75 is under the default threshold 0.90
    assert result["selected_customer_id"] is None
    (candidate,) = result["candidates"]
    assert candidate["customer_id"] == muster
    assert signals_of(candidate) == [("S2_DOMAIN", 0.75, "muster.de")]


def test_s1_for_the_contacts_customer_s2_for_the_others_on_the_domain(client: httpx.Client, org: OrgContext) -> None:
    zentrale = add_customer(client, org, "Muster Zentrale", None, ("einkauf@muster.de",))
    filiale = add_customer(client, org, "Muster Filiale", None, ("filiale@muster.de",))
    result = detect(client, org, from_email="einkauf@muster.de")
    assert [(c["customer_id"], c["score"]) for c in result["candidates"]] == [(zentrale, 0.95), (filiale, 0.75)]
    assert result["status"] == "AUTO_SELECTED"  # 0.95 leads 0.75 by 0.20
    assert result["selected_customer_id"] == zentrale


def test_idn_sender_matches_its_contact(client: httpx.Client, org: OrgContext) -> None:
    mueller = add_customer(client, org, "Müller KG", None, ("info@müller.de",))
    result = detect(client, org, from_email="Info <INFO@xn--mller-kva.de>")
    assert [c["customer_id"] for c in result["candidates"]] == [mueller]
    assert signals_of(result["candidates"][0]) == [("S1_EMAIL", 0.95, "info@müller.de")]


@pytest.mark.parametrize("sender", ["Max Mustermann", "einkauf@", "einkauf@muster", "<>", "@muster.de", ""])
def test_malformed_sender_is_no_signal_not_an_error(client: httpx.Client, org: OrgContext, sender: str) -> None:
    add_customer(client, org, "Muster GmbH", None, ("einkauf@muster.de",))
    result = detect(client, org, from_email=sender)
    assert result == {"status": "NOT_FOUND", "selected_customer_id": None, "candidates": []}


def test_public_mail_domain_never_gives_s2(client: httpx.Client, org: OrgContext) -> None:
    private = add_customer(client, org, "Hans Privat", None, ("hans.privat@gmx.de",))
    add_customer(client, org, "Eva Privat", None, ("eva@gmail.com",))
    assert detect(client, org, from_email="jemand@gmx.de")["status"] == "NOT_FOUND"
    assert detect(client, org, from_email="someone@GMAIL.com")["status"] == "NOT_FOUND"
    result = detect(client, org, from_email="Hans.Privat@gmx.de")  # the exact address still counts
    assert [(c["customer_id"], signals_of(c)) for c in result["candidates"]] == [
        (private, [("S1_EMAIL", 0.95, "hans.privat@gmx.de")])
    ]


def test_hint_email_is_used_when_from_email_is_absent(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", None, ("einkauf@muster.de",))
    add_customer(client, org, "Anders AG", None, ("info@anders.de",))
    result = detect(client, org, customer_hint={"email": "einkauf@muster.de"})
    assert result["selected_customer_id"] == muster
    result = detect(client, org, from_email="info@anders.de", customer_hint={"email": "einkauf@muster.de"})
    assert [c["name"] for c in result["candidates"]] == ["Anders AG"]


# --- S4: the customer number -------------------------------------------------------------------


def test_customer_number_in_the_text_is_s4(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", "K-4711")
    add_customer(client, org, "Other GmbH", "4711")
    result = detect(client, org, document_text=ORDER_TEXT.format(number="K-4711"))
    assert result["status"] == "AUTO_SELECTED"
    (candidate,) = result["candidates"]
    assert candidate["customer_id"] == muster
    assert signals_of(candidate) == [("S4_CUSTOMER_NUMBER", 0.98, "K-4711")]


def test_customer_number_is_compared_exactly(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Muster GmbH", "K-4711")
    assert detect(client, org, document_text=ORDER_TEXT.format(number="k-4711"))["status"] == "NOT_FOUND"
    assert detect(client, org, document_text="Bestellnummer: K-4711")["status"] == "NOT_FOUND"


def test_customer_number_from_the_hint(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", "AB/12.3")
    result = detect(client, org, customer_hint={"erp_customer_number": " AB/12.3 "})
    assert result["selected_customer_id"] == muster
    assert signals_of(result["candidates"][0]) == [("S4_CUSTOMER_NUMBER", 0.98, "AB/12.3")]
    assert detect(client, org, customer_hint={"erp_customer_number": "AB 12.3"})["status"] == "NOT_FOUND"


# --- S5: the company name ----------------------------------------------------------------------


def test_hint_name_is_compared_without_legal_form_case_or_accents(client: httpx.Client, org: OrgContext) -> None:
    mueller = add_customer(client, org, "Müller Metallbau GmbH & Co. KG")
    result = detect(client, org, customer_hint={"name": "  MUELLER metallbau AG "})
    (candidate,) = result["candidates"]
    assert candidate["customer_id"] == mueller
    ((signal, score, value),) = signals_of(candidate)
    assert (signal, value) == ("S5_NAME", "MUELLER metallbau AG")
    assert 0.58 <= score < 0.85
    exact = detect(client, org, customer_hint={"name": "müller METALLBAU e.K."})["candidates"][0]
    assert signals_of(exact) == [("S5_NAME", 0.85, "müller METALLBAU e.K.")]  # similarity 1 → 0.85
    assert exact["score"] == 0.85


def test_name_from_the_texts_header_lines(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Schraubenhandel Muster GmbH")
    text = "\n\nBestellung\n  Schraubenhandel Muster AG  \nMusterstraße 1\n80331 München\n"
    (candidate,) = detect(client, org, document_text=text)["candidates"]
    assert candidate["customer_id"] == muster
    assert signals_of(candidate) == [("S5_NAME", 0.85, "Schraubenhandel Muster AG")]


def test_the_best_line_is_the_signals_value(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Schraubenhandel Muster GmbH")
    text = "Schraubenhandel Mustermann\nSCHRAUBENHANDEL MUSTER AG\nSchraubenhandel Muster GmbH\n"
    (candidate,) = detect(client, org, document_text=text)["candidates"]
    assert candidate["customer_id"] == muster
    assert signals_of(candidate) == [("S5_NAME", 0.85, "SCHRAUBENHANDEL MUSTER AG")]  # the first of the best


def test_only_the_first_ten_lines_are_compared(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Schraubenhandel Muster GmbH")
    text = "\n".join(f"Zeile {i}" for i in range(10)) + "\nSchraubenhandel Muster GmbH\n"
    assert detect(client, org, document_text=text)["status"] == "NOT_FOUND"


def test_hint_name_replaces_the_header_lines(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Schraubenhandel Muster GmbH")
    result = detect(client, org, document_text="Schraubenhandel Muster GmbH\n", customer_hint={"name": "Zebra"})
    assert result["status"] == "NOT_FOUND"


def test_dissimilar_names_give_nothing(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Schraubenhandel Muster GmbH")
    assert detect(client, org, customer_hint={"name": "Blumen Hofmann"})["status"] == "NOT_FOUND"
    assert detect(client, org, customer_hint={"name": "GmbH & Co. KG"})["status"] == "NOT_FOUND"


def test_only_the_five_most_similar_names_get_s5(client: httpx.Client, org: OrgContext) -> None:
    names = ["Bäckerei Sonnenschein", "Bäckerei Sonnenschein Nord", "Bäckerei Sonnenschein Süd",
             "Bäckerei Sonnenschein West", "Bäckerei Sonnenschein Ost", "Bäckerei Sonnenschein Mitte",
             "Bäckerei Sonnenschein Filiale Hauptbahnhof"]  # fmt: skip
    ids = {name: add_customer(client, org, name + " GmbH") for name in names}
    result = detect(client, org, customer_hint={"name": "Bäckerei Sonnenschein"})
    candidates = result["candidates"]
    assert len(candidates) == 5
    assert candidates[0]["customer_id"] == ids["Bäckerei Sonnenschein"]
    assert candidates[0]["score"] == 0.85
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    assert ids["Bäckerei Sonnenschein Filiale Hauptbahnhof"] not in {c["customer_id"] for c in candidates}
    assert result["status"] == "AMBIGUOUS"  # 0.85 is under 0.90


# --- aggregation, ranking, selection ------------------------------------------------------------


def test_signals_of_one_customer_combine_by_noisy_or(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", "4711", ("einkauf@muster.de",))
    result = detect(client, org, from_email="chef@muster.de", customer_hint={"name": "Muster AG"})
    (candidate,) = result["candidates"]
    assert signals_of(candidate) == [("S2_DOMAIN", 0.75, "muster.de"), ("S5_NAME", 0.85, "Muster AG")]
    assert candidate["score"] == 0.9625  # 1 − 0.25 · 0.15
    assert result["selected_customer_id"] == muster
    everything = detect(
        client,
        org,
        from_email="einkauf@muster.de",
        document_text=ORDER_TEXT.format(number="4711"),
        customer_hint={"name": "Muster"},
    )
    (candidate,) = everything["candidates"]
    assert [s["signal"] for s in candidate["signals"]] == ["S1_EMAIL", "S4_CUSTOMER_NUMBER", "S5_NAME"]
    assert candidate["score"] == 0.999  # clamped


def test_at_most_five_candidates_best_first_ties_by_name(client: httpx.Client, org: OrgContext) -> None:
    for name in ["delta", "Bravo", "alpha", "Echo", "charlie", "foxtrot"]:
        add_customer(client, org, f"{name} Niederlassung", None, (f"{name.lower()}@konzern.de",))
    numbered = add_customer(client, org, "zulu Niederlassung", "Z-100", ("zulu@konzern.de",))
    result = detect(client, org, from_email="einkauf@konzern.de", customer_hint={"erp_customer_number": "Z-100"})
    names = [c["name"].split()[0] for c in result["candidates"]]
    assert names == ["zulu", "alpha", "Bravo", "charlie", "delta"]
    assert result["candidates"][0]["customer_id"] == numbered
    assert result["candidates"][0]["score"] == 0.995  # S2 + S4
    assert result["status"] == "AUTO_SELECTED"


def test_a_customer_last_by_name_still_wins_with_a_second_signal(client: httpx.Client, org: OrgContext) -> None:
    """Many customers on one domain: the one that also has a name signal is not cut off by name order."""
    for index in range(8):
        add_customer(client, org, f"Alpha Filiale {index}", None, (f"f{index}@konzern.de",))
    zentrale = add_customer(client, org, "Zentrale Zeppelin Werke", None, ("zentrale@konzern.de",))
    result = detect(client, org, from_email="neu@konzern.de", customer_hint={"name": "Zeppelin Werke"})
    assert result["candidates"][0]["customer_id"] == zentrale
    assert [s["signal"] for s in result["candidates"][0]["signals"]] == ["S2_DOMAIN", "S5_NAME"]
    assert [c["name"] for c in result["candidates"][1:]] == [f"Alpha Filiale {i}" for i in range(4)]


def test_empty_request_finds_nothing(client: httpx.Client, org: OrgContext) -> None:
    add_customer(client, org, "Muster GmbH", "4711", ("einkauf@muster.de",))
    assert detect(client, org) == {"status": "NOT_FOUND", "selected_customer_id": None, "candidates": []}
    assert detect(client, org, from_email=None, document_text="", customer_hint={})["status"] == "NOT_FOUND"


# --- settings change the answer ----------------------------------------------------------------


def patch_settings(client: httpx.Client, org: OrgContext, **detection: object) -> None:
    response = client.patch(
        "/api/v1/org/settings", json={"customer_detection": detection}, headers=org.headers(Role.ADMIN)
    )
    assert response.status_code == 200, response.text


def test_threshold_and_gap_from_the_orgs_settings(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", None, ("einkauf@muster.de",))
    add_customer(client, org, "Muster Filiale", None, ("filiale@muster.de",))
    assert detect(client, org, from_email="chef@muster.de")["status"] == "AMBIGUOUS"  # two at 0.75
    assert detect(client, org, from_email="einkauf@muster.de")["status"] == "AUTO_SELECTED"  # 0.95 vs 0.75
    patch_settings(client, org, min_gap=0.25)
    assert detect(client, org, from_email="einkauf@muster.de")["status"] == "AMBIGUOUS"  # leads by 0.20
    patch_settings(client, org, min_gap=0.2)
    assert detect(client, org, from_email="einkauf@muster.de")["selected_customer_id"] == muster
    patch_settings(client, org, auto_select_threshold=0.96)
    assert detect(client, org, from_email="einkauf@muster.de")["status"] == "AMBIGUOUS"
    patch_settings(client, org, auto_select_threshold=0.75, min_gap=0)
    assert detect(client, org, from_email="chef@muster.de")["status"] == "AUTO_SELECTED"  # a tie, gap 0


def test_public_domains_extra_stops_s2_for_that_domain(client: httpx.Client, org: OrgContext) -> None:
    muster = add_customer(client, org, "Muster GmbH", None, ("einkauf@muster-mail.de",))
    assert len(detect(client, org, from_email="x@muster-mail.de")["candidates"]) == 1
    patch_settings(client, org, public_domains_extra=["MUSTER-MAIL.DE"])
    assert detect(client, org, from_email="x@muster-mail.de")["status"] == "NOT_FOUND"
    assert detect(client, org, from_email="einkauf@muster-mail.de")["selected_customer_id"] == muster


# --- tenancy and roles -------------------------------------------------------------------------


def test_another_orgs_customers_are_never_candidates(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    theirs = {
        add_customer(client, other_org, "Muster GmbH", "4711", ("einkauf@muster.de",)),
        add_customer(client, other_org, "Muster Filiale", "4712", ("filiale@muster.de",)),
    }
    request = {
        "from_email": "einkauf@muster.de",
        "document_text": ORDER_TEXT.format(number="4711"),
        "customer_hint": {"name": "Muster GmbH", "erp_customer_number": "4712"},
    }
    assert detect(client, org, **request) == {"status": "NOT_FOUND", "selected_customer_id": None, "candidates": []}
    ours = add_customer(client, org, "Muster AG", "4711", ("einkauf@muster.de",))
    result = detect(client, org, **request)
    assert [c["customer_id"] for c in result["candidates"]] == [ours]
    assert {c["customer_id"] for c in detect(client, other_org, **request)["candidates"]} == theirs


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_detect(client: httpx.Client, org: OrgContext, role: Role) -> None:
    muster = add_customer(client, org, "Muster GmbH", None, ("einkauf@muster.de",))
    assert detect(client, org, role, from_email="einkauf@muster.de")["selected_customer_id"] == muster


def test_detect_needs_a_token(client: httpx.Client) -> None:
    assert_error(client.post("/api/v1/customers/detect", json={}), 401, "AUTH_REQUIRED")


# --- the request itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from_mail": "x@y.de"}, "from_mail"),
        ({"customer_hint": {"name": "x", "phone": "1"}}, "customer_hint.phone"),
        ({"document_text": 42}, "document_text"),
        ({"customer_hint": "Muster"}, "customer_hint"),
    ],
)
def test_bad_bodies_are_422(client: httpx.Client, org: OrgContext, body: dict[str, object], field: str) -> None:
    error = assert_error(
        client.post("/api/v1/customers/detect", json=body, headers=org.headers()), 422, "VALIDATION_ERROR"
    )
    assert field in [e["field"] for e in error["details"]["errors"]]


def test_body_must_be_a_json_object(client: httpx.Client, org: OrgContext) -> None:
    response = client.post(
        "/api/v1/customers/detect", content=b"[1]", headers={**org.headers(), "content-type": "application/json"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    response = client.post(
        "/api/v1/customers/detect", content=b"from=x", headers={**org.headers(), "content-type": "text/plain"}
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_detect_takes_only_post(client: httpx.Client, org: OrgContext) -> None:
    response = client.get("/api/v1/customers/detect", headers=org.headers())
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


def test_detect_is_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/customers/detect"]) == {"post"}
    assert set(paths["/api/v1/org/settings"]) == {"get", "patch"}
