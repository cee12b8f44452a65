"""Which process feeds the dashboards from where, by role, and an api process's /ws fed
over RabbitMQ by readings a devices process published (the real broker)."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medhub.adapters.live_broker import LiveBrokerFeed, LiveVitalsPublisher
from medhub.api.permissions import Principal
from medhub.api.tokens import issue_access_token
from medhub.config import Settings
from medhub.migrations import upgrade
from medhub.serve import _http_app, parse_roles
from medhub.timeseries.records import SampleRecord
from medhub.wiring import Components, build
from tests.conftest import unavailable

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SECRET = "live-wiring-test-secret-0123456789abcdef"


def settings_for(tmp_path: Path, *, amqp: bool) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'medhub.db'}",
        timeseries_url=f"sqlite:///{tmp_path / 'samples.db'}",
        devices={"spool_path": tmp_path / "spool.db"},
        jwt_secret=SECRET,
        amqp_url=AMQP_URL if amqp else None,
        alerts={"exchange": f"medhub.alerts.test-{uuid.uuid4().hex[:8]}"},
    )


def built(tmp_path: Path, roles: list[str], *, amqp: bool = True) -> tuple[Components, TestClient]:
    chosen = parse_roles(roles)
    components = build(settings_for(tmp_path, amqp=amqp), chosen)
    upgrade(components.store.engine)
    return components, TestClient(_http_app(components, chosen, tls=False))


@pytest.mark.parametrize(
    ("roles", "amqp", "feed", "publisher"),
    [
        (["all"], True, False, False),  # one process: everything in-process
        (["api", "devices"], True, False, False),
        (["api"], True, True, False),
        (["api", "worker"], True, True, False),
        (["devices"], True, False, True),
        (["devices", "worker"], True, False, True),
        (["mllp"], True, False, False),
        (["api"], False, False, False),  # no broker: nothing to feed from (logged at start)
    ],
)
def test_the_broker_feeds_the_dashboards_only_where_roles_are_split(
    tmp_path: Path, roles: list[str], amqp: bool, feed: bool, publisher: bool
) -> None:
    components, _client = built(tmp_path, roles, amqp=amqp)
    try:
        assert isinstance(components.live_feed, LiveBrokerFeed) is feed
        assert isinstance(components.live_publisher, LiveVitalsPublisher) is publisher
        service = components.alerts.service if components.alerts else None
        # With a feed, alert changes reach the hub from the broker only: one path, in order.
        assert service is not None
        assert bool(service.change_listeners) is (not feed)
    finally:
        components.store.close()


def test_an_api_process_shows_vitals_a_devices_process_ingested(tmp_path: Path) -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        unavailable("RabbitMQ", exc)
    components, client = built(tmp_path, ["api"])
    feed = components.live_feed
    assert feed is not None
    publisher = LiveVitalsPublisher(AMQP_URL, interval=0.05)  # the devices process's half
    patient = f"p-{uuid.uuid4().hex[:8]}"
    token = issue_access_token(
        Principal(subject="ops", role="admin", kind="token"),
        secret=SECRET,
        now=datetime.now(UTC),
        ttl=timedelta(minutes=5),
    )
    feed.start()
    publisher.start()
    try:
        assert feed.wait_connected(30)
        with client, client.websocket_connect(f"/ws?access_token={token}") as ws:
            hello = ws.receive_json()
            assert hello["type"] == "hello" and hello["live"] is True  # the feed is up
            now = datetime.now(UTC)
            publisher(
                [SampleRecord("mon-9", "heart-rate", "0", now, now, now, 77.0, "/min", patient)]
            )
            update = ws.receive_json()
        assert update["type"] == "vitals.update" and update["patient"] == patient
        assert update["vitals"]["heart-rate"]["value"] == 77.0
        assert update["vitals"]["heart-rate"]["device"] == "mon-9"
    finally:
        publisher.stop()
        feed.stop()
        components.store.close()
