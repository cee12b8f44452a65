"""Roles, liveness and readiness as an orchestrator sees them (``/health``, ``/ready``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from medhub.config import Settings
from medhub.errors import ConfigurationError
from medhub.migrations import upgrade
from medhub.serve import _http_app, parse_roles
from medhub.wiring import ROLES, build


@pytest.mark.parametrize(
    ("given", "roles"),
    [
        (None, set(ROLES)),
        ([], set(ROLES)),
        (["all"], set(ROLES)),
        (["mllp"], {"mllp"}),
        (["mllp", "worker"], {"mllp", "worker"}),
        (["mllp,worker"], {"mllp", "worker"}),
        ([" api , devices "], {"api", "devices"}),
    ],
)
def test_roles_from_the_command_line(given: list[str] | None, roles: set[str]) -> None:
    assert parse_roles(given) == roles


@pytest.mark.parametrize("bad", [["mlp"], ["api", "web"], ["API"]])
def test_an_unknown_role_is_refused_naming_it(bad: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="unknown role"):
        parse_roles(bad)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'medhub.db'}",
        timeseries_url=f"sqlite:///{tmp_path / 'samples.db'}",
        devices={"spool_path": tmp_path / "spool.db"},
        jwt_secret="x" * 40,
    )


def test_a_process_without_the_api_role_serves_probes_and_metrics_but_no_patient_data(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    roles = parse_roles(["mllp"])
    components = build(settings, roles)
    upgrade(components.store.engine)
    try:
        with TestClient(_http_app(components, roles, tls=False)) as client:
            health = client.get("/health")
            ready = client.get("/ready")
            metrics = client.get("/metrics")
            patients = client.get("/fhir/Patient")
    finally:
        components.store.close()
    assert health.status_code == 200 and health.json()["roles"] == ["mllp"]
    # The listener was never started in this test: readiness says so instead of lying.
    assert ready.status_code == 503
    assert ready.json()["components"]["mllp"] == {"status": "down", "detail": "not listening"}
    assert "mqtt" not in ready.json()["components"]  # not this process's business
    assert metrics.status_code == 200
    assert patients.status_code == 404
    assert not (tmp_path / "spool.db").exists()  # no device spool outside the devices role


def test_readiness_follows_the_schema_revision(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    roles = parse_roles(["api"])
    components = build(settings, roles)
    engine = components.store.engine
    try:
        with TestClient(_http_app(components, roles, tls=False)) as client:
            empty = client.get("/ready").json()["components"]["schema"]
            upgrade(engine, "0009")
            behind = client.get("/ready")
            upgrade(engine)
            current = client.get("/ready")
            with engine.begin() as connection:  # what a newer release's migration leaves
                connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
            ahead = client.get("/ready")
    finally:
        components.store.close()
    assert empty["status"] == "down" and "nothing" in empty["detail"]
    assert behind.status_code == 503
    assert behind.json()["components"]["schema"]["detail"].startswith("schema at 0009")
    assert current.status_code == 200
    # An old replica during a rolling upgrade keeps serving until it is replaced.
    assert ahead.status_code == 200
    assert "newer than this code" in ahead.json()["components"]["schema"]["detail"]


def test_an_empty_spool_path_turns_the_spool_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDHUB_DEVICES__SPOOL_PATH", "")
    assert Settings().devices.spool_path is None
    monkeypatch.setenv("MEDHUB_DEVICES__SPOOL_PATH", "/var/lib/medhub/spool.db")
    assert Settings().devices.spool_path == Path("/var/lib/medhub/spool.db")
