"""Webhook tests: real receivers on 127.0.0.1 in this process, the test server's own delivery worker.

Settings are changed on the process's settings object (`get_settings()`), which the test server's worker and
routes read on every use: short retry pauses, loopback receivers allowed. Every wait is on a condition with a
deadline, never a fixed sleep.
"""

from collections.abc import Iterator

import pytest

from customer_master.config import Settings, get_settings
from tests.conftest import Db
from tests.webhooks.helpers import Receiver


@pytest.fixture
def receiver(db: Db) -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    # Endpoints of this test go with it: no worker keeps retrying them.
    db.execute(
        "DELETE FROM webhook_endpoint WHERE url LIKE :ip OR url LIKE :name",
        ip=f"http://127.0.0.1:{receiver.port}/%",
        name=f"http://localhost:{receiver.port}/%",
    )
    receiver.close()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The process's settings, with loopback receivers allowed and short pauses; restored after the test."""
    current = get_settings()
    monkeypatch.setattr(current, "webhook_allow_loopback", True)
    monkeypatch.setattr(current, "webhook_retry_s", (0.2,))
    monkeypatch.setattr(current, "webhook_give_up_s", 60.0)
    monkeypatch.setattr(current, "webhook_secret_overlap_s", 86_400.0)
    return current
