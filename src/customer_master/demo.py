"""The demo org of `serve --demo`: one user per role and a few sample customers, created once."""

from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth import repository as auth_repository
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import UserCreate
from customer_master.auth.tenancy import OrgId
from customer_master.customers import service as customer_service
from customer_master.customers.schemas import CustomerCreate
from customer_master.history.context import Actor, record_changes_as

DEMO_SLUG = "demo"
DEMO_PASSWORD = "customer-master-demo"
DEMO_USERS = [(f"{role.value.lower()}@demo.example.com", role) for role in Role]

SAMPLE_CUSTOMERS = [
    {
        "name": "Muster GmbH",
        "erp_customer_number": "4711",
        "default_currency": "EUR",
        "default_language": "de-DE",
        "billing_address": {
            "street": "Musterstraße 1",
            "city": "München",
            "postal_code": "80331",
            "country": "DE",
        },
        "metadata": {"discount_group": "A"},
        "contacts": [
            {"email": "einkauf@muster.de", "name": "Max Mustermann", "is_primary": True},
            {"email": "buchhaltung@muster.de", "name": "Erika Musterfrau"},
        ],
    },
    {
        "name": "Müller & Söhne KG",
        "erp_customer_number": "4712",
        "default_currency": "EUR",
        "default_language": "de-DE",
        "billing_address": {
            "street": "Hauptstraße 12",
            "city": "Köln",
            "postal_code": "50667",
            "country": "DE",
        },
        "contacts": [{"email": "bestellung@mueller-soehne.de", "name": "Jana Müller", "is_primary": True}],
    },
    {
        "name": "Alpenhandel AG",
        "erp_customer_number": "CH-100",
        "default_currency": "CHF",
        "default_language": "de-CH",
        "billing_address": {
            "street": "Bahnhofstrasse 5",
            "city": "Zürich",
            "postal_code": "8001",
            "country": "CH",
        },
        "contacts": [{"email": "orders@alpenhandel.ch", "is_primary": True}],
    },
    {
        "name": "Wiener Großhandel GmbH",
        "erp_customer_number": "AT-77",
        "default_currency": "EUR",
        "default_language": "de-AT",
        "billing_address": {"street": "Ringstraße 3", "city": "Wien", "postal_code": "1010", "country": "AT"},
        "contacts": [{"email": "einkauf@wiener-grosshandel.at", "is_primary": True}],
    },
    {
        "name": "Brighton Supplies Ltd",
        "erp_customer_number": "UK-2001",
        "default_currency": "GBP",
        "default_language": "en-GB",
        "billing_address": {
            "street": "1 Marine Parade",
            "city": "Brighton",
            "postal_code": "BN2 1TL",
            "country": "GB",
        },
        "contacts": [{"email": "purchasing@brighton-supplies.co.uk", "name": "Sam Smith", "is_primary": True}],
    },
    {
        "name": "Café Lumière SARL",
        "default_currency": "EUR",
        "default_language": "fr-FR",
        "billing_address": {
            "street": "12 Rue de Rivoli",
            "city": "Paris",
            "postal_code": "75001",
            "country": "FR",
        },
        "contacts": [{"email": "commandes@cafe-lumiere.fr"}],
    },
    # Muster GmbH once more, entered by hand without its ERP number: the duplicates page lists the pair.
    {
        "name": "Muster G.m.b.H.",
        "default_currency": "EUR",
        "default_language": "de-DE",
        "billing_address": {"street": "Musterstraße 1", "city": "München", "postal_code": "80331", "country": "DE"},
        "contacts": [{"email": "einkauf@muster.de", "name": "M. Mustermann", "is_primary": True}],
    },
]


async def ensure_demo_org(session: AsyncSession) -> bool:
    """Create the demo org with its users and customers unless it exists; True when created."""
    if await auth_repository.org_id_by_slug(session, DEMO_SLUG) is not None:
        return False
    org = await auth_service.create_org(session, DEMO_SLUG, "Demo Großhandel GmbH")
    org_id = OrgId(org.id)
    for email, role in DEMO_USERS:
        user = UserCreate(email=email, name=f"Demo {role.value.title()}", role=role, password=DEMO_PASSWORD)
        await auth_service.create_user(session, org_id, user)
    await record_changes_as(session, Actor.command("serve --demo"), "cli")
    for sample in SAMPLE_CUSTOMERS:
        await customer_service.create_customer(session, org_id, CustomerCreate.model_validate(sample))
    return True
