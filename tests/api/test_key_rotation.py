"""Rotating the token signing key without refusing anyone: replicas switched one by one.

The runbook's three steps: every replica first *accepts* the new key, then
*signs* with it while still accepting the old one, and finally drops the old
one once its tokens have expired. At no step does a token that one replica
signed get a 401 from another.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from medhub.api.accounts import Accounts
from medhub.api.app import create_app
from medhub.api.deps import ApiContext
from medhub.api.permissions import Principal
from medhub.api.security import Security
from medhub.api.tokens import ALGORITHM, issue_access_token, key_id
from medhub.config import Settings
from medhub.errors import ConfigurationError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.wiring_security import accepted_secrets

OLD = "old-signing-key-0123456789abcdefghijklmnop"
NEW = "new-signing-key-0123456789abcdefghijklmnop"
ADMIN = Principal(subject="rotating", role="admin")


def _replica(store: SqlResourceStore, signing: str, *accepted: str) -> TestClient:
    security = Security(
        signing, Accounts(store.session, clock=lambda: datetime.now(UTC)), lambda: datetime.now(UTC)
    )
    security.accepted_secrets = accepted
    return TestClient(create_app(ApiContext(store=store, security=security)))


def _token(secret: str) -> str:
    return issue_access_token(ADMIN, secret=secret, now=datetime.now(UTC), ttl=timedelta(minutes=5))


def _status(client: TestClient, token: str) -> int:
    return client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"}).status_code


def test_each_step_of_a_rotation_accepts_what_the_other_replicas_signed(
    sqlite_store: SqlResourceStore,
) -> None:
    by_old, by_new = _token(OLD), _token(NEW)
    step_1 = _replica(sqlite_store, OLD, NEW)  # signs with the old key, accepts the new
    step_2 = _replica(sqlite_store, NEW, OLD)  # signs with the new key, accepts the old
    assert [_status(step_1, t) for t in (by_old, by_new)] == [200, 200]
    assert [_status(step_2, t) for t in (by_old, by_new)] == [200, 200]
    step_3 = _replica(sqlite_store, NEW)  # the old tokens have expired: the old key goes
    assert _status(step_3, by_new) == 200
    refused = step_3.get("/fhir/Patient", headers={"Authorization": f"Bearer {by_old}"})
    assert refused.status_code == 401
    assert "rotated" in refused.json()["issue"][0]["diagnostics"]


def test_a_token_names_its_key_by_digest_not_by_the_key() -> None:
    header = jwt.get_unverified_header(_token(NEW))
    assert header["kid"] == key_id(NEW) != key_id(OLD)
    assert NEW not in str(header)


def test_a_token_claiming_an_accepted_keys_id_but_signed_otherwise_is_refused(
    sqlite_store: SqlResourceStore,
) -> None:
    claims = jwt.decode(_token(NEW), NEW, algorithms=[ALGORITHM], issuer="medhub")
    forged = jwt.encode(
        claims, "attacker-key-0123456789abcdefghijklmnopq", ALGORITHM, {"kid": key_id(OLD)}
    )
    assert _status(_replica(sqlite_store, NEW, OLD), forged) == 401


def test_a_token_from_before_key_ids_is_checked_against_the_signing_key(
    sqlite_store: SqlResourceStore,
) -> None:
    claims = jwt.decode(_token(NEW), NEW, algorithms=[ALGORITHM], issuer="medhub")
    unnamed = jwt.encode(claims, NEW, ALGORITHM)  # no kid header
    assert _status(_replica(sqlite_store, NEW, OLD), unnamed) == 200
    assert _status(_replica(sqlite_store, OLD, NEW), unnamed) == 401


def test_accepted_keys_come_comma_separated_and_must_be_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDHUB_JWT_ACCEPTED_SECRETS", f"{OLD}, {NEW}")
    settings = Settings()
    assert accepted_secrets(settings) == (OLD, NEW)
    assert OLD not in str(settings.redacted())
    monkeypatch.setenv("MEDHUB_JWT_ACCEPTED_SECRETS", f"{OLD},short")
    with pytest.raises(ConfigurationError, match="key 2 must be at least 32"):
        accepted_secrets(Settings())
