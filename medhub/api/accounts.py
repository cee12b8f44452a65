"""Users, logins, refresh tokens and API keys.

* **Passwords** are hashed with argon2id (argon2-cffi's defaults, RFC 9106's
  second recommended setting). Five failed logins lock the account for 15
  minutes (OWASP authentication cheat sheet), answered 429, so guessing a
  password over HTTP is impractical; the lock and its end are kept in the
  database, so several API processes share it.
* **A second factor** (TOTP, RFC 6238, pyotp) is asked for when the user has
  one enrolled.
* **Refresh tokens** rotate: each use returns a new one and spends the old. A
  spent token presented again means it was stolen (or replayed), so the
  whole family from that login is revoked (OAuth 2.0 Security BCP §4.14).
* **API keys** (``mhk_<prefix>_<secret>``) carry a role, scopes and care
  units, are shown once, kept as a digest, and can be revoked.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, get_args

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medhub.api.account_tables import ApiKeyRow, RefreshTokenRow, UserRow
from medhub.api.permissions import ALL_UNITS, Principal, Role, care_units_from, parse_scopes
from medhub.errors import (
    AuthenticationError,
    ConflictError,
    InputError,
    NotFoundError,
    TooManyRequestsError,
)

MAX_FAILED_LOGINS: Final = 5
LOCK_TIME: Final = timedelta(minutes=15)
KEY_PREFIX: Final = "mhk_"
_ROLES: Final = frozenset(get_args(Role))

SessionFactory = Callable[[], AbstractContextManager[Session]]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _units(values: list[str] | None) -> str:
    return json.dumps(sorted(values) if values is not None else [ALL_UNITS])


def _check_role(role: str) -> Role:
    if role not in _ROLES:
        raise InputError(f"role must be one of {', '.join(sorted(_ROLES))}, got {role!r}")
    return role  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Login:
    """What a successful login or refresh gives: the principal and a new refresh token."""

    principal: Principal
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as listed to administrators (no secrets)."""

    id: int
    username: str
    display_name: str
    role: str
    care_units: list[str]
    practitioner: str | None
    totp: bool
    disabled: bool


def _principal(row: UserRow, client: str) -> Principal:
    return Principal(
        subject=row.username,
        role=_check_role(row.role),
        kind="user",
        care_units=care_units_from(json.loads(row.care_units)),
        practitioner=row.practitioner,
        client=client,
        display=row.display_name,
    )


class Accounts:
    """The account service over the resource database's sessions."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        clock: Callable[[], datetime],
        refresh_ttl: timedelta = timedelta(hours=12),
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.refresh_ttl = refresh_ttl
        self.hasher = hasher or PasswordHasher()

    # -- users ---------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str,
        *,
        role: str,
        care_units: list[str] | None = None,
        display_name: str = "",
        practitioner: str | None = None,
    ) -> UserView:
        """A new user; ConflictError if the name is taken. ``care_units`` None: every unit."""
        if len(password) < 12:
            raise InputError("a password needs at least 12 characters")
        row = UserRow(
            username=username,
            display_name=display_name or username,
            password_hash=self.hasher.hash(password),
            role=_check_role(role),
            care_units=_units(care_units),
            practitioner=practitioner,
            disabled=False,
            failed_logins=0,
            created_at=self.clock(),
        )
        try:
            with self.sessions() as session:
                session.add(row)
                session.flush()
                return self._view(row)
        except IntegrityError as exc:
            raise ConflictError(f"user {username!r} exists already") from exc

    def list_users(self) -> list[UserView]:
        with self.sessions() as session:
            return [self._view(r) for r in session.scalars(select(UserRow).order_by(UserRow.id))]

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self.sessions() as session:
            row = self._user(session, username)
            row.disabled = disabled
            if disabled:
                self._revoke_user_tokens(session, row.id)

    def enroll_totp(self, username: str) -> str:
        """A new TOTP secret for the user (base32), to show once as a QR code or text."""
        secret = pyotp.random_base32()
        with self.sessions() as session:
            self._user(session, username).totp_secret = secret
        return secret

    # -- logins --------------------------------------------------------------------

    def login(self, username: str, password: str, *, totp: str | None, client: str) -> Login:
        """Check the password (and TOTP); a locked account is 429 whatever the password."""
        now = self.clock()
        with self.sessions() as session:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).first()
            if row is None:
                self.hasher.hash(password)  # the same time as a wrong password: no user probing
                raise AuthenticationError("unknown user or wrong password")
            if row.locked_until is not None and row.locked_until > now:
                raise TooManyRequestsError(
                    f"too many failed logins; try again after {row.locked_until.isoformat()}"
                )
            if row.disabled or not self._password_ok(row, password):
                self._failed(row, now)
                raise AuthenticationError("unknown user or wrong password")
            if row.totp_secret and not (
                totp and pyotp.TOTP(row.totp_secret).verify(totp, for_time=now, valid_window=1)
            ):
                self._failed(row, now)
                raise AuthenticationError("a valid one-time code (TOTP) is required")
            row.failed_logins, row.locked_until = 0, None
            token, expires = self._new_refresh(session, row.id, secrets.token_hex(16), now)
            return Login(_principal(row, client), token, expires)

    def refresh(self, token: str, *, client: str) -> Login:
        """A new access principal and refresh token for an unspent one; reuse revokes all."""
        now = self.clock()
        with self.sessions() as session:
            row = session.scalars(
                select(RefreshTokenRow)
                .where(RefreshTokenRow.token_hash == _digest(token))
                .with_for_update()
            ).first()
            if row is None or row.revoked or row.expires_at <= now:
                raise AuthenticationError("the refresh token is not valid; log in again")
            if row.used_at is not None:
                session.execute(
                    update(RefreshTokenRow)
                    .where(RefreshTokenRow.family == row.family)
                    .values(revoked=True)
                )
                session.commit()
                raise AuthenticationError(
                    "this refresh token was already used: every session of that login is "
                    "revoked; log in again"
                )
            row.used_at = now
            user = session.get(UserRow, row.user_id)
            if user is None or user.disabled:
                raise AuthenticationError("the account is disabled")
            new, expires = self._new_refresh(session, user.id, row.family, now)
            return Login(_principal(user, client), new, expires)

    def logout(self, token: str) -> None:
        """Revoke the refresh token's family (every token of that login)."""
        with self.sessions() as session:
            row = session.scalars(
                select(RefreshTokenRow).where(RefreshTokenRow.token_hash == _digest(token))
            ).first()
            if row is not None:
                session.execute(
                    update(RefreshTokenRow)
                    .where(RefreshTokenRow.family == row.family)
                    .values(revoked=True)
                )

    # -- API keys ------------------------------------------------------------------

    def create_api_key(
        self, name: str, *, role: str, scopes: str = "", care_units: list[str] | None = None
    ) -> str:
        """A new key, returned once in full: ``mhk_<prefix>_<secret>``."""
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self.sessions() as session:
            session.add(
                ApiKeyRow(
                    prefix=prefix,
                    key_hash=_digest(secret),
                    name=name,
                    role=_check_role(role),
                    scopes=" ".join(sorted(parse_scopes(scopes))),
                    care_units=_units(care_units),
                    created_at=self.clock(),
                )
            )
        return f"{KEY_PREFIX}{prefix}_{secret}"

    def api_key_principal(self, key: str, *, client: str) -> Principal:
        """The principal of a presented key; AuthenticationError if unknown or revoked."""
        body = key.removeprefix(KEY_PREFIX)
        prefix, _, secret = body.partition("_")
        if not key.startswith(KEY_PREFIX) or not prefix or not secret:
            raise AuthenticationError("the API key is malformed")
        with self.sessions() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
            if (
                row is None
                or row.revoked_at is not None
                or not secrets.compare_digest(row.key_hash, _digest(secret))
            ):
                raise AuthenticationError("the API key is unknown or revoked")
            now = self.clock()
            if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
                row.last_used_at = now
            return Principal(
                subject=f"{row.name} ({row.prefix})",
                role=_check_role(row.role),
                kind="api-key",
                care_units=care_units_from(json.loads(row.care_units)),
                scopes=parse_scopes(row.scopes),
                client=client,
                display=row.name,
            )

    def revoke_api_key(self, prefix: str) -> None:
        with self.sessions() as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
            if row is None:
                raise NotFoundError(f"no API key with prefix {prefix!r}")
            row.revoked_at = row.revoked_at or self.clock()

    def list_api_keys(self) -> Iterator[dict[str, object]]:
        with self.sessions() as session:
            for row in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)):
                yield {
                    "prefix": row.prefix,
                    "name": row.name,
                    "role": row.role,
                    "scopes": row.scopes.split(),
                    "revoked": row.revoked_at is not None,
                    "lastUsedAt": row.last_used_at.isoformat() if row.last_used_at else None,
                }

    # -- internals ------------------------------------------------------------------

    def _password_ok(self, row: UserRow, password: str) -> bool:
        try:
            self.hasher.verify(row.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if self.hasher.check_needs_rehash(row.password_hash):
            row.password_hash = self.hasher.hash(password)
        return True

    def _failed(self, row: UserRow, now: datetime) -> None:
        """Count a failure in its own commit (the caller's error must not roll it back)."""
        row.failed_logins += 1
        if row.failed_logins >= MAX_FAILED_LOGINS:
            row.locked_until, row.failed_logins = now + LOCK_TIME, 0
        session = Session.object_session(row)
        assert session is not None
        session.commit()

    def _new_refresh(
        self, session: Session, user_id: int, family: str, now: datetime
    ) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = now + self.refresh_ttl
        session.add(
            RefreshTokenRow(
                user_id=user_id,
                token_hash=_digest(token),
                family=family,
                created_at=now,
                expires_at=expires,
                revoked=False,
            )
        )
        return token, expires

    @staticmethod
    def _revoke_user_tokens(session: Session, user_id: int) -> None:
        session.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.user_id == user_id).values(revoked=True)
        )

    @staticmethod
    def _user(session: Session, username: str) -> UserRow:
        row = session.scalars(select(UserRow).where(UserRow.username == username)).first()
        if row is None:
            raise NotFoundError(f"no user {username!r}")
        return row

    @staticmethod
    def _view(row: UserRow) -> UserView:
        return UserView(
            row.id,
            row.username,
            row.display_name,
            row.role,
            json.loads(row.care_units),
            row.practitioner,
            row.totp_secret is not None,
            row.disabled,
        )
