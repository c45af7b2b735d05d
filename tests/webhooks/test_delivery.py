"""Delivery (API.md §11 "Push"): in feed order, signed, retried, given up and resumed, filtered, replayed.

Events come from ordinary API writes; the test server's own worker delivers them to a receiver on 127.0.0.1.
"""

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from customer_master.config import Settings
from customer_master.webhooks import sender
from tests.conftest import OrgContext, assert_error
from tests.webhooks.helpers import Receiver, change, create_webhook, deliveries, feed, feed_end, wait_until


def test_events_after_creation_arrive_in_feed_order_signed_with_the_feeds_json(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    change(client, org)  # before the endpoint: never sent
    start = feed_end(client, org)
    endpoint = create_webhook(client, org, receiver.url("/in-order"))
    customers = change(client, org, 3)
    patched = client.patch(
        f"/api/v1/customers/{customers[0]['id']}",
        json={"name": "Umbenannt GmbH"},
        headers=org.headers() | {"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    expected = feed(client, org, after=start)
    assert len(expected) == 4

    wait_until(lambda: len(receiver.received("/in-order")) >= 4, "four deliveries")

    received = receiver.received("/in-order")
    assert [r.event for r in received] == expected  # exactly the feed's events, in its order, each once
    for request, event in zip(received, expected, strict=True):
        assert request.headers["content-type"] == "application/json"
        assert request.headers["content-length"] == str(len(request.body))
        assert request.headers["webhook-id"] == event["id"]
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        StandardWebhook(endpoint["secret"]).verify(request.body, request.headers)
    # The receiver has answered; the worker records each answer just after.
    wait_until(lambda: len(deliveries(client, org, endpoint["id"])) == 4, "four attempts recorded")
    log = deliveries(client, org, endpoint["id"])
    assert [(d["event_id"], d["attempt"], d["status_code"], d["error"]) for d in log] == [
        (event["id"], 1, 200, None) for event in reversed(expected)
    ]


def test_a_failed_attempt_is_retried_after_the_configured_pauses(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "webhook_retry_s", (0.3, 0.6))
    receiver.status["/flaky"] = lambda number: 500 if number <= 3 else 204
    endpoint = create_webhook(client, org, receiver.url("/flaky"))
    change(client, org)

    wait_until(lambda: receiver.received("/flaky", delivered_only=True), "the fourth attempt")

    received = receiver.received("/flaky")
    assert [r.status for r in received] == [500, 500, 500, 204]
    assert len({r.body for r in received}) == 1
    gaps = [later.at - earlier.at for earlier, later in zip(received, received[1:], strict=False)]
    assert [gap >= pause for gap, pause in zip(gaps, (0.25, 0.55, 0.55), strict=True)] == [True] * 3  # last repeats
    # The receiver has answered; the worker records the answer just after.
    wait_until(lambda: len(deliveries(client, org, endpoint["id"])) == 4, "the fourth attempt recorded")
    log = deliveries(client, org, endpoint["id"])
    assert [(d["attempt"], d["status_code"]) for d in log] == [(4, 204), (3, 500), (2, 500), (1, 500)]


def test_after_the_give_up_time_the_endpoint_is_failing_and_active_resumes_it_without_loss(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "webhook_give_up_s", 0.8)
    receiver.status["/down"] = 503
    endpoint = create_webhook(client, org, receiver.url("/down"))
    path = f"/api/v1/webhooks/{endpoint['id']}"
    change(client, org, 2)

    wait_until(lambda: client.get(path, headers=org.headers()).json()["status"] == "FAILING", "FAILING")
    attempts = len(receiver.received("/down"))
    assert attempts >= 2
    assert {r.event["sequence"] for r in receiver.received("/down")} == {feed(client, org)[0]["sequence"]}
    change(client, org)  # while FAILING: kept for later
    receiver.status["/down"] = 200
    assert client.get(path, headers=org.headers()).json()["status"] == "FAILING"
    assert len(receiver.received("/down")) == attempts  # nothing is tried while FAILING

    resumed = client.patch(path, json={"status": "ACTIVE"}, headers=org.headers())
    assert resumed.json()["status"] == "ACTIVE"

    wait_until(lambda: len(receiver.delivered_sequences("/down")) >= 3, "the three events")
    assert receiver.delivered_sequences("/down") == [event["sequence"] for event in feed(client, org)]


def test_only_the_endpoints_types_are_sent_and_a_change_of_types_applies_to_what_follows(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    contacts = create_webhook(client, org, receiver.url("/contacts"), types=["contact.*"])
    everything = create_webhook(client, org, receiver.url("/all"))
    change(client, org)
    change(client, org, contacts=[{"email": "einkauf@muster.example", "name": "Max", "is_primary": True}])

    wait_until(lambda: len(receiver.received("/all")) >= 3, "every event at the endpoint without types")
    wait_until(lambda: receiver.received("/contacts"), "the contact event")
    assert [r.event["type"] for r in receiver.received("/all")] == [
        "customer.created",
        "customer.created",
        "contact.created",
    ]
    assert [r.event["type"] for r in receiver.received("/contacts")] == ["contact.created"]

    client.patch(
        f"/api/v1/webhooks/{contacts['id']}", json={"types": ["customer.created"]}, headers=org.headers()
    ).raise_for_status()
    change(client, org)
    wait_until(lambda: len(receiver.received("/all")) >= 4, "the fourth event at the endpoint without types")
    wait_until(lambda: len(receiver.received("/contacts")) >= 2, "the customer event")
    assert [r.event["type"] for r in receiver.received("/contacts")] == ["contact.created", "customer.created"]
    assert everything["types"] is None


def test_a_replay_sends_every_event_after_the_cursor_again_in_order_before_new_ones(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = create_webhook(client, org, receiver.url("/replay"))
    path = f"/api/v1/webhooks/{endpoint['id']}"
    change(client, org, 3)
    sequences = [event["sequence"] for event in feed(client, org)]
    wait_until(lambda: len(receiver.received("/replay")) >= 3, "three deliveries")

    response = client.post(f"{path}/replay", json={"after": str(sequences[0])}, headers=org.headers())

    assert response.status_code == 202, response.text
    assert response.json() == {"after": str(sequences[0])}
    wait_until(lambda: len(receiver.received("/replay")) >= 5, "the two events again")
    change(client, org)
    wait_until(lambda: len(receiver.received("/replay")) >= 6, "the new event")
    latest = feed(client, org)[-1]["sequence"]
    assert receiver.delivered_sequences("/replay") == sequences + sequences[1:] + [latest]

    # Never forward past what the endpoint has not had: with the receiver down, a replay "after the end"
    # leaves the cursor where it is.
    receiver.status["/replay"] = 500
    change(client, org)
    wait_until(lambda: receiver.received("/replay")[-1].status == 500, "a failed attempt")
    forward = client.post(f"{path}/replay", json={"after": feed_end(client, org)}, headers=org.headers())
    assert forward.json() == {"after": str(latest)}
    receiver.status["/replay"] = 200
    wait_until(lambda: len(receiver.delivered_sequences("/replay")) >= 7, "the pending event")
    assert receiver.delivered_sequences("/replay")[-1] == feed(client, org)[-1]["sequence"]

    bad = client.post(f"{path}/replay", json={"after": "x1"}, headers=org.headers())
    assert assert_error(bad, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "after"
    beyond = client.post(f"{path}/replay", json={"after": str(10**9)}, headers=org.headers())
    assert assert_error(beyond, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "after"
    monkeypatch.setattr(settings, "event_retention_s", 1)
    wait_until(
        lambda: client.post(f"{path}/replay", json={"after": "0"}, headers=org.headers()).status_code == 410,
        "the first events to leave the feed",
    )


def test_a_delivery_in_flight_does_not_undo_a_replay(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    endpoint = create_webhook(client, org, receiver.url("/gate"))
    change(client, org, 2)
    sequences = [event["sequence"] for event in feed(client, org)]
    wait_until(lambda: len(receiver.received("/gate")) >= 2, "two deliveries")
    gate = receiver.hold["/gate"] = threading.Event()
    change(client, org)
    wait_until(lambda: receiver.in_flight["/gate"] == 1, "the third event in flight")

    replay = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay", json={"after": str(sequences[0])}, headers=org.headers()
    )
    assert replay.status_code == 202
    gate.set()  # the third event is answered 200 only now, after the replay

    third = feed(client, org)[-1]["sequence"]
    wait_until(lambda: len(receiver.received("/gate")) >= 5, "the replayed events")
    assert receiver.delivered_sequences("/gate") == [*sequences, third, sequences[1], third]


def test_redirects_are_not_followed(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    receiver.status["/moved"] = 302
    endpoint = create_webhook(client, org, receiver.url("/moved"))
    change(client, org)

    log = wait_until(lambda: deliveries(client, org, endpoint["id"]), "an attempt")

    assert log[0]["status_code"] == 302
    assert "redirect not followed" in log[0]["error"]
    assert receiver.received("/elsewhere") == []


def test_an_address_no_longer_allowed_fails_the_attempt_without_a_request(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = create_webhook(client, org, receiver.url("/loopback"))
    monkeypatch.setattr(settings, "webhook_allow_loopback", False)
    change(client, org)

    log = wait_until(lambda: deliveries(client, org, endpoint["id"]), "an attempt")

    assert log[0]["status_code"] is None
    assert "https" in log[0]["error"]
    assert receiver.received("/loopback") == []


def test_a_host_that_does_not_resolve_fails_the_attempt(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    endpoint = create_webhook(client, org, "https://hooks.nowhere.invalid/cm")
    change(client, org)

    log = wait_until(lambda: deliveries(client, org, endpoint["id"]), "an attempt")

    assert log[0]["status_code"] is None
    assert "does not resolve" in log[0]["error"]
    client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=org.headers())


def test_after_a_rotation_both_secrets_sign_for_the_overlap_then_only_the_new_one(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "webhook_secret_overlap_s", 1.0)
    endpoint = create_webhook(client, org, receiver.url("/rotated"))
    old = endpoint["secret"]
    rotated_at = time.monotonic()
    new = client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=org.headers()).json()["secret"]
    change(client, org)
    during = wait_until(lambda: receiver.received("/rotated"), "a delivery during the overlap")[0]
    assert time.monotonic() - rotated_at < 1.0, "the machine was too slow for this overlap"

    wait_until(lambda: time.monotonic() - rotated_at > 1.2, "the end of the overlap")
    change(client, org)
    after = wait_until(lambda: receiver.received("/rotated")[1:], "a delivery after the overlap")[0]

    assert len(during.headers["webhook-signature"].split(" ")) == 2
    StandardWebhook(old).verify(during.body, during.headers)
    StandardWebhook(new).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    StandardWebhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(old).verify(after.body, after.headers)


def test_a_deleted_endpoint_is_sent_nothing_more(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    receiver.status["/deleted"] = 500
    endpoint = create_webhook(client, org, receiver.url("/deleted"))
    change(client, org)
    wait_until(lambda: receiver.received("/deleted"), "a failed attempt")

    assert client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=org.headers()).status_code == 204
    change(client, org)
    seen = len(receiver.received("/deleted"))
    other = create_webhook(client, org, receiver.url("/witness"))  # a witness: it gets the next event
    change(client, org)
    wait_until(lambda: receiver.received("/witness"), "the witness's delivery")

    assert len(receiver.received("/deleted")) <= seen + 1  # at most the attempt that was already in flight
    assert other["id"] != endpoint["id"]


def test_the_request_goes_to_the_checked_address_and_names_the_urls_host(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    create_webhook(client, org, f"http://localhost:{receiver.port}/named")  # resolved here to 127.0.0.1
    change(client, org)

    request = wait_until(lambda: receiver.received("/named"), "a delivery")[0]

    assert request.headers["host"] == f"localhost:{receiver.port}"


def test_https_goes_to_the_checked_address_with_the_urls_host_as_tls_server_name(
    client: httpx.Client, org: OrgContext, settings: Settings, tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command for a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server_names: list[str | None] = []

    def remember_server_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        server_names.append(name)

    context.sni_callback = remember_server_name
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def handshake_once() -> None:
        connection, _ = listener.accept()
        with connection, contextlib.suppress(OSError):
            context.wrap_socket(connection, server_side=True)

    threading.Thread(target=handshake_once, daemon=True).start()
    endpoint = create_webhook(client, org, f"https://localhost:{port}/hook")
    try:
        change(client, org)
        log = wait_until(lambda: deliveries(client, org, endpoint["id"]), "an attempt")

        assert server_names == ["localhost"]  # SNI: the URL's host, though the connection went to 127.0.0.1
        assert log[0]["status_code"] is None
        assert "CERTIFICATE_VERIFY_FAILED" in log[0]["error"]  # and its certificate is checked against it
    finally:
        client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=org.headers())
        listener.close()


def test_a_receiver_that_does_not_answer_holds_only_its_own_endpoint_until_the_attempt_times_out(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "ATTEMPT_TIMEOUT_S", 1.0)  # 10 s in production
    receiver.hold["/silent"] = threading.Event()  # never answers (released when the receiver closes)
    silent = create_webhook(client, org, receiver.url("/silent"))
    create_webhook(client, org, receiver.url("/prompt"))
    change(client, org)
    wait_until(lambda: receiver.in_flight["/silent"] == 1, "the silent receiver holding the event")

    change(client, org)  # the API answers, and the other endpoint gets both events meanwhile
    wait_until(lambda: len(receiver.received("/prompt")) == 2, "both events at the prompt receiver")
    assert receiver.received("/silent") == []

    log = wait_until(lambda: deliveries(client, org, silent["id"]), "the timed-out attempt")
    assert log[0]["status_code"] is None
    assert log[0]["error"] == "no answer within 1 s"
    assert 1000 <= log[0]["duration_ms"] < 5000
