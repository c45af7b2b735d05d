"""One delivery attempt: check where the URL leads, sign, `POST`, and say how it went (never raises).

The host is resolved and checked on every attempt (`addresses.py`) and the request goes to the checked
address itself, with the URL's host in the `Host` header and, for https, as the TLS server name (SNI and
certificate check) — so no second lookup can lead the connection elsewhere. Redirects are not followed
(a 3xx is a failed attempt), no proxy from the environment is used, and the whole attempt (lookup,
connect, answer) has 10 s. The answer's body is never read.
"""

import asyncio
import time
from dataclasses import dataclass

import httpx

from customer_master.webhooks import addresses
from customer_master.webhooks.signing import signature_header

ATTEMPT_TIMEOUT_S = 10.0
USER_AGENT = "customer-master-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_client() -> httpx.AsyncClient:
    """The worker's one client: connections kept per checked address, nothing taken from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


async def send(
    client: httpx.AsyncClient,
    url: str,
    *,
    allow_loopback: bool,
    message_id: str,
    body: bytes,
    secrets: list[str],
) -> Outcome:
    """`POST` the signed body to `url`, if it leads only to allowed addresses."""
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
            target = addresses.parse_url(url)
            checked = await addresses.resolve(target, allow_loopback)
            timestamp = int(time.time())
            headers = {
                "Host": target.host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(secrets, message_id, timestamp, body),
            }
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = client.build_request(
                "POST", target.request_url(checked[0]), content=body, headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            await response.aclose()
            status_code = response.status_code
            if response.is_redirect:
                error = f"redirect not followed (Location: {response.headers.get('location', '')[:200]})"
    except addresses.UnsafeUrl as exc:
        error = str(exc)
    except TimeoutError:
        error = f"no answer within {ATTEMPT_TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(status_code, error, round((time.monotonic() - started) * 1000))
