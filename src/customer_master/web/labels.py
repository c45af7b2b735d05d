"""The UI's names for the API's codes: a customer's fields, detection's signals, the duplicates' reasons.

Written once here in English, marked with `N_` for `scripts/update-translations.sh`, translated once per
language by `core.environment`, which gives them to every template (`field_labels`, `signal_labels`,
`reason_labels`).
"""

from collections.abc import Callable, Mapping


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


# In the order the merge screen lists the fields (API.md §12).
FIELD_LABELS = {
    "name": N_("Name"),
    "erp_customer_number": N_("ERP number"),
    "default_currency": N_("Currency"),
    "default_language": N_("Language"),
    "billing_address": N_("Billing address"),
    "shipping_address": N_("Shipping address"),
    "metadata": N_("Metadata"),
}
SIGNAL_LABELS = {
    "S1_EMAIL": N_("Sender is a contact"),
    "S2_DOMAIN": N_("Sender's domain is a contact's"),
    "S4_CUSTOMER_NUMBER": N_("Customer number"),
    "S5_NAME": N_("Similar company name"),
}
REASON_LABELS = {
    "SAME_EMAIL": N_("Same contact e-mail"),
    "SAME_DOMAIN": N_("Same contact e-mail domain"),
    "SIMILAR_NAME": N_("Similar name"),
}


def translated_labels(gettext: Callable[[str], str]) -> dict[str, Mapping[str, str]]:
    """Each table above in one language, by the name templates know it under."""
    tables = {"field_labels": FIELD_LABELS, "signal_labels": SIGNAL_LABELS, "reason_labels": REASON_LABELS}
    return {name: {code: gettext(text) for code, text in table.items()} for name, table in tables.items()}
