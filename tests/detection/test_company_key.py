"""The database's `cm_company_key()` and `customer.name_key` agree with `signals.company_key()`."""

import httpx
import pytest

from customer_master.detection import signals
from tests.conftest import Db, OrgContext
from tests.detection.helpers import add_customer

NAMES = [
    "Muster GmbH",
    "Muster GmbH & Co. KG",
    "Müller e.K.",
    "Bäckerei Groß OHG",
    "Rossi S.p.A.",
    "Dupont S.A.R.L.",
    "Acme, Inc.",
    "Start UG (haftungsbeschränkt)",
    "Meier AG & Co. KGaA — Niederlassung Süd",
    "Ærø Ølgaard A/S",
    'O\'Neil "Quality" [Tools] {x} <y> a|b c\\d e+f g*h i=j #1 @home ~k ^l – m',
    "GmbH",
    "Café Crème SARL\u00a0Paris",
    "  ",
    "",
] + sorted(f"Firma {word} X" for word in signals.LEGAL_FORM_WORDS)


def test_the_database_key_is_the_python_key(db: Db) -> None:
    rows = db.fetch("SELECT n, cm_company_key(n) AS key FROM unnest(CAST(:names AS text[])) AS n", names=NAMES)
    assert {row.n: row.key for row in rows} == {name: signals.company_key(name) for name in NAMES}


@pytest.mark.parametrize("name", ["Muster GmbH & Co. KG", "Café Müller e.K."])
def test_name_key_follows_the_name(client: httpx.Client, org: OrgContext, db: Db, name: str) -> None:
    customer_id = add_customer(client, org, name)
    (row,) = db.fetch("SELECT name_key FROM customer WHERE id = :id", id=customer_id)
    assert row.name_key == signals.company_key(name)
    response = client.patch(f"/api/v1/customers/{customer_id}", json={"name": "Neu AG"}, headers=org.headers())
    assert response.status_code == 200, response.text
    (row,) = db.fetch("SELECT name_key FROM customer WHERE id = :id", id=customer_id)
    assert row.name_key == "neu"
