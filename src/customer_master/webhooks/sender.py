"""One delivery attempt: check where the URL leads, sign, `POST`, and say how it went (never raises).

The host is resolved and checked on every attempt (`addresses.py`) and the request goes to the checked
address itself, with the URL's host in the `Host` header and, for https, as the TLS server name (SNI and
certificate check) — so no second lookup can lead the connection elsewhere. Redirects are not followed
(a 3xx is a failed attempt), no proxy from the environment is used, and the whole attempt (lookup,
connect, answer) has 10 s; the answer counts once its status line is in (its body is read, up to
`MAX_ANSWER_BYTES`, and dropped).

HTTP/1.1 with `h11` on asyncio's streams (a POST and its answer, nothing else: no cookies, redirects, proxies
or compression to handle), a quarter of the CPU that a general client (httpx over httpcore and anyio) spends
per request. Connections: each endpoint has a `Channel` of its own, which keeps its one connection open
between its attempts for a few seconds, so a backlog goes over one connection. A kept connection is used
again only for the same scheme, checked address, port and host name (TLS: the certificate was checked for
that name), never shared between endpoints. The TLS settings are made once per process.
"""

import asyncio
import ssl
import time
import uuid
from dataclasses import dataclass

import h11
import httpx

from customer_master.webhooks import addresses
from customer_master.webhooks.signing import signature_header

ATTEMPT_TIMEOUT_S = 10.0
USER_AGENT = "customer-master-webhooks/1"
# How long an idle connection to a receiver is kept: below the common servers' own idle limits (uvicorn
# 5 s, nginx 75 s), so that a receiver seldom closes one just as the next request goes out.
KEEPALIVE_S = 4.0
MAX_ANSWER_BYTES = 64 * 1024  # an answer's body is read (and dropped) up to this; a longer one ends the connection


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_TLS: ssl.SSLContext | None = None
REDIRECTS = frozenset({301, 302, 303, 307, 308})
READ_SIZE = 64 * 1024


def tls_context() -> ssl.SSLContext:
    """The process's TLS settings (httpx's defaults: certifi's roots, nothing from the environment); made once
    (~10 ms)."""
    global _TLS
    if _TLS is None:
        _TLS = httpx.create_ssl_context(trust_env=False)
    return _TLS


ConnectionKey = tuple[str, str, int, str]  # scheme, checked address, port, host name


class Connection:
    """One HTTP/1.1 connection to a receiver: requests one after the other."""

    def __init__(self, key: ConnectionKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self._reader = reader
        self._writer = writer
        self._http = h11.Connection(h11.CLIENT)
        self.status_code: int | None = None  # of the answer to the current request, once its status line is in
        self.location = ""
        self.idle_until = 0.0

    @classmethod
    async def open(cls, key: ConnectionKey) -> "Connection":
        scheme, address, port, host = key
        if scheme == "https":
            reader, writer = await asyncio.open_connection(address, port, ssl=tls_context(), server_hostname=host)
        else:
            reader, writer = await asyncio.open_connection(address, port)
        return cls(key, reader, writer)

    def usable(self) -> bool:
        """Idle, not expired, and not closed by the receiver meanwhile."""
        return (
            self._http.our_state is h11.IDLE
            and time.monotonic() < self.idle_until
            and not self._reader.at_eof()
            and not self._writer.is_closing()
        )

    async def post(self, target: str, headers: list[tuple[str, str]], body: bytes) -> bool:
        """Send the request, read the answer (`status_code`, `location`); True when the connection can carry
        another request."""
        self.status_code, self.location = None, ""
        http = self._http
        parts = [
            http.send(h11.Request(method="POST", target=target, headers=headers)),
            http.send(h11.Data(data=body)),
            http.send(h11.EndOfMessage()),
        ]
        self._writer.write(b"".join(part for part in parts if part))
        await self._writer.drain()
        received = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await self._reader.read(READ_SIZE))  # b"": the receiver closed it
            elif isinstance(event, h11.Response):
                self.status_code = event.status_code
                for name, value in event.headers:
                    if name == b"location":
                        self.location = value.decode("latin-1")
            elif isinstance(event, h11.Data):
                received += len(event.data)
                if received > MAX_ANSWER_BYTES:  # not read to its end: this connection is done
                    return False
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the receiver closed the connection without an answer")
            # h11.InformationalResponse (1xx): the answer follows
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            return False  # the receiver (HTTP/1.0, `Connection: close`) ends it
        http.start_next_cycle()
        self.idle_until = time.monotonic() + KEEPALIVE_S
        return True

    def close(self) -> None:
        self._writer.close()


class Channel:
    """An endpoint's way to its receiver: at most one kept connection."""

    def __init__(self) -> None:
        self._kept: Connection | None = None
        self.last_used = time.monotonic()

    def take(self, key: ConnectionKey) -> Connection | None:
        kept, self._kept = self._kept, None
        if kept is not None and kept.key == key and kept.usable():
            return kept
        if kept is not None:
            kept.close()
        return None

    def keep(self, connection: Connection) -> None:
        self.close()
        self._kept = connection

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None


class Channels:
    """One `Channel` per endpoint, kept while it is used and `KEEPALIVE_S` after; `close_idle` closes the rest."""

    def __init__(self) -> None:
        self._channels: dict[uuid.UUID, Channel] = {}
        self._in_use: set[uuid.UUID] = set()

    def take(self, endpoint_id: uuid.UUID) -> Channel:
        self._in_use.add(endpoint_id)
        return self._channels.setdefault(endpoint_id, Channel())

    def give_back(self, endpoint_id: uuid.UUID) -> None:
        self._in_use.discard(endpoint_id)
        channel = self._channels.get(endpoint_id)
        if channel is not None:
            channel.last_used = time.monotonic()

    async def close_idle(self, idle_s: float = KEEPALIVE_S) -> None:
        now = time.monotonic()
        for endpoint_id, channel in list(self._channels.items()):
            if endpoint_id not in self._in_use and now - channel.last_used >= idle_s:
                del self._channels[endpoint_id]
                channel.close()

    async def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


async def send(
    channel: Channel,
    url: str,
    *,
    allow_loopback: bool,
    message_id: str,
    body: bytes,
    secrets: list[str],
) -> Outcome:
    """`POST` the signed body to `url`, if it leads only to allowed addresses."""
    started = time.monotonic()
    connection: Connection | None = None
    reusable = False
    error: str | None = None
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
            target = addresses.parse_url(url)
            checked = await addresses.resolve(target, allow_loopback)
            timestamp = int(time.time())
            headers = [
                ("Host", target.host_header),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("User-Agent", USER_AGENT),
                ("webhook-id", message_id),
                ("webhook-timestamp", str(timestamp)),
                ("webhook-signature", signature_header(secrets, message_id, timestamp, body)),
            ]
            key = (target.scheme, str(checked[0]), target.port, target.host)
            connection = channel.take(key) or await Connection.open(key)
            reusable = await connection.post(target.path or "/", headers, body)
    except addresses.UnsafeUrl as exc:
        error = str(exc)
    except TimeoutError:
        error = f"no answer within {ATTEMPT_TIMEOUT_S:g} s"
    except (h11.ProtocolError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:  # also when the attempt is cancelled (the worker stops): a connection is kept only when clean
        if connection is not None:
            if reusable:
                channel.keep(connection)
            else:
                connection.close()
    status_code = connection.status_code if connection is not None else None
    if status_code is not None:  # the answer counts, whatever came after its status line
        error = None
        if status_code in REDIRECTS and connection is not None and connection.location:
            error = f"redirect not followed (Location: {connection.location[:200]})"
    return Outcome(status_code, error, round((time.monotonic() - started) * 1000))
