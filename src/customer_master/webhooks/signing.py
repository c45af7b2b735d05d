"""Standard Webhooks signatures (the scheme Svix and others use; API.md §11).

A secret is `whsec_` followed by the base64 of random bytes; the key is those bytes. Each attempt is signed
afresh with its own timestamp (receivers refuse old timestamps), once per secret that still signs.
"""

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def signature_header(valid_secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per valid secret, space-separated."""
    return " ".join(signature(secret, message_id, timestamp, body) for secret in valid_secrets)
