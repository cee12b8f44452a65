"""Wiring of the HTTP API's security: the signing secret, accounts, care units and audit."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from medhub.api.accounts import Accounts
from medhub.api.audit import AuditTrail
from medhub.api.patient_access import PatientAccess
from medhub.api.security import RateLimiter, Security
from medhub.config import Settings
from medhub.errors import ConfigurationError
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.fhir.write_rules import utc_now


def signing_secret(settings: Settings) -> str:
    """``MEDHUB_JWT_SECRET``; for the embedded SQLite default, one generated once under var/.

    A server database means a deployment other processes share, where each
    process must sign with the same key: there the secret must be given.
    """
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        if len(value) < 32:
            raise ConfigurationError("MEDHUB_JWT_SECRET must be at least 32 characters")
        return value
    if not settings.database_url.get_secret_value().startswith("sqlite"):
        raise ConfigurationError(
            "MEDHUB_JWT_SECRET is required with a server database (PostgreSQL, MariaDB)"
        )
    path = settings.auth.secret_file
    try:
        if path.exists():
            return path.read_text(encoding="ascii").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(value)
        return value
    except OSError as exc:
        raise ConfigurationError(f"cannot read or create the signing secret {path}: {exc}") from exc


def accepted_secrets(settings: Settings) -> tuple[str, ...]:
    """``MEDHUB_JWT_ACCEPTED_SECRETS``: old keys still verified during a rotation."""
    keys = tuple(key.get_secret_value() for key in settings.jwt_accepted_secrets)
    for position, key in enumerate(keys, start=1):
        if len(key) < 32:
            raise ConfigurationError(
                f"MEDHUB_JWT_ACCEPTED_SECRETS: key {position} must be at least 32 characters"
            )
    return keys


@dataclass(frozen=True, slots=True)
class SecurityComponents:
    security: Security
    access: PatientAccess
    audit: AuditTrail


def build_security(settings: Settings, store: SqlResourceStore) -> SecurityComponents:
    auth = settings.auth
    accounts = Accounts(
        store.session, clock=utc_now, refresh_ttl=timedelta(seconds=auth.refresh_ttl_seconds)
    )
    security = Security(
        secret=signing_secret(settings),
        accounts=accounts,
        clock=utc_now,
        access_ttl=timedelta(seconds=auth.access_ttl_seconds),
        cookie_secure=settings.http.tls_cert_file is not None,
        limiter=RateLimiter(auth.rate_limit_per_minute, auth.rate_limit_burst),
        accepted_secrets=accepted_secrets(settings),
    )
    access = PatientAccess(store, ttl_seconds=auth.care_unit_cache_seconds)

    @contextmanager
    def audit_units() -> Iterator[SqlResources]:
        with store.session() as session:
            yield SqlResources(session, clock=store.clock, validate=False)

    trail = AuditTrail(store, clock=utc_now, units=audit_units)
    return SecurityComponents(security, access, trail)
