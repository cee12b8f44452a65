"""Access tokens: short-lived JWTs (RFC 7519, HS256) that carry a principal (pure).

The token is the principal, signed: its role, care units, SMART scopes, the
linked Practitioner and, for a patient-context launch, the patient. A route
trusts what the signature covers and reads no table, so a check costs a
signature verification (~20 us). Revocation is by expiry: access tokens live
minutes (``MEDHUB_AUTH__ACCESS_TTL_SECONDS``); what a user can revoke is the
refresh token (:mod:`medhub.api.accounts`).

Key rotation: a token names its key in the ``kid`` header (a digest, never
the key). Verification takes the signing key plus any keys still accepted
(``MEDHUB_JWT_ACCEPTED_SECRETS``), so replicas can be switched to a new key
one by one without refusing the tokens the others signed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, cast, get_args

import jwt

from medhub.api.permissions import ALL_UNITS, Principal, Role, care_units_from
from medhub.errors import AuthenticationError

ISSUER: Final = "medhub"
ALGORITHM: Final = "HS256"
_ROLES: Final = frozenset(get_args(Role))


def key_id(secret: str) -> str:
    """The ``kid`` of a signing key: 16 hex digits of its SHA-256 (names it, reveals nothing)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _verification_key(token: str, secret: str, accepted: Sequence[str]) -> str:
    """The key that must have signed ``token``, chosen by its ``kid`` header."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"the access token is not valid: {exc}") from exc
    if kid is None:  # signed before tokens named their key: only the current key will do
        return secret
    for key in (secret, *accepted):
        if key_id(key) == kid:
            return key
    raise AuthenticationError(
        "the access token is signed with a key this server does not accept (was it rotated?); "
        "refresh it or log in again"
    )


def issue_access_token(principal: Principal, *, secret: str, now: datetime, ttl: timedelta) -> str:
    """A signed token for ``principal``, valid from ``now`` for ``ttl``."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": principal.subject,
        "role": principal.role,
        "kind": principal.kind,
        "units": sorted(principal.care_units) if principal.care_units is not None else [ALL_UNITS],
        "scope": " ".join(sorted(principal.scopes)),
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if principal.practitioner:
        claims["practitioner"] = principal.practitioner
    if principal.patient:
        claims["patient"] = principal.patient
    if principal.display:
        claims["name"] = principal.display
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id(secret)})


def decode_access_token(
    token: str,
    *,
    secret: str,
    now: datetime,
    client: str = "",
    accepted: Sequence[str] = (),
) -> Principal:
    """The principal a token carries; AuthenticationError if forged, expired or malformed.

    ``accepted``: keys that no longer sign but whose tokens are still good (rotation).
    """
    key = _verification_key(token, secret, accepted)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"the access token is not valid: {exc}") from exc
    if int(claims["exp"]) <= int(now.timestamp()):
        raise AuthenticationError("the access token has expired; refresh it or log in again")
    role = claims.get("role")
    units = claims.get("units")
    if role not in _ROLES or not isinstance(units, list):
        raise AuthenticationError("the access token has no valid role or care units")
    checked_role = cast(Role, role)
    kind = claims.get("kind")
    return Principal(
        subject=str(claims["sub"]),
        role=checked_role,
        kind=kind if kind in ("user", "api-key", "token") else "token",
        care_units=care_units_from([str(u) for u in units]),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        practitioner=claims.get("practitioner"),
        patient=claims.get("patient"),
        client=client,
        display=str(claims.get("name", "")),
    )
