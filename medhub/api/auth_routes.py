"""Logins, token refresh, and the administration of users and API keys.

``POST /auth/login`` (username, password, optional TOTP code) answers a
short-lived access token (Bearer JWT) and a refresh token; ``POST
/auth/refresh`` spends a refresh token for a new pair; ``POST /auth/logout``
revokes the login. Administrators manage users and API keys under
``/api/v1/users`` and ``/api/v1/api-keys``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from medhub.api.accounts import Login
from medhub.api.deps import ContextDep
from medhub.api.permissions import Principal
from medhub.api.security import PrincipalDep, Security, require
from medhub.api.tokens import issue_access_token
from medhub.errors import NotFoundError

router = APIRouter(tags=["auth"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16)


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=12, max_length=1024)
    role: str
    care_units: list[str] | None = Field(default=None, description='["*"] or omitted: every unit')
    display_name: str = ""
    practitioner: str | None = Field(default=None, examples=["Practitioner/123"])


class NewApiKey(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: str
    scopes: str = Field(default="", examples=["system/Observation.write system/Device.*"])
    care_units: list[str] | None = None


def _security(context: ContextDep) -> Security:
    if context.security is None:
        raise NotFoundError("this medhub runs without logins")
    return context.security


SecurityDep = Annotated[Security, Depends(_security)]


def token_answer(security: Security, login: Login) -> dict[str, Any]:
    """The OAuth 2.0-shaped answer (RFC 6749 §5.1) with the principal's role and units."""
    principal = login.principal
    return {
        "access_token": issue_access_token(
            principal, secret=security.secret, now=security.clock(), ttl=security.access_ttl
        ),
        "token_type": "Bearer",
        "expires_in": int(security.access_ttl.total_seconds()),
        "refresh_token": login.refresh_token,
        "role": principal.role,
        "care_units": sorted(principal.care_units) if principal.care_units is not None else ["*"],
    }


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post("/auth/login")
def login(body: Credentials, request: Request, security: SecurityDep) -> dict[str, Any]:
    result = security.accounts.login(
        body.username, body.password, totp=body.totp, client=_client(request)
    )
    return token_answer(security, result)


@router.post("/auth/refresh")
def refresh(body: RefreshBody, request: Request, security: SecurityDep) -> dict[str, Any]:
    return token_answer(
        security, security.accounts.refresh(body.refresh_token, client=_client(request))
    )


@router.post("/auth/logout", status_code=204)
def logout(body: RefreshBody, security: SecurityDep) -> None:
    security.accounts.logout(body.refresh_token)


@router.get("/auth/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """Who the token says the caller is (what the dashboards show in their header)."""
    return {
        "subject": principal.subject,
        "display": principal.display,
        "role": principal.role,
        "kind": principal.kind,
        "care_units": sorted(principal.care_units) if principal.care_units is not None else ["*"],
        "practitioner": principal.practitioner,
        "scopes": sorted(principal.scopes),
    }


UsersRead = Annotated[Principal, Depends(require("users", "read"))]
UsersWrite = Annotated[Principal, Depends(require("users", "write"))]


@router.get("/api/v1/users")
def list_users(_principal: UsersRead, security: SecurityDep) -> dict[str, Any]:
    return {"users": [asdict(u) for u in security.accounts.list_users()]}


@router.post("/api/v1/users", status_code=201)
def create_user(body: NewUser, _principal: UsersWrite, security: SecurityDep) -> dict[str, Any]:
    user = security.accounts.create_user(
        body.username,
        body.password,
        role=body.role,
        care_units=None if body.care_units is None or "*" in body.care_units else body.care_units,
        display_name=body.display_name,
        practitioner=body.practitioner,
    )
    return asdict(user)


@router.post("/api/v1/users/{username}/disable", status_code=204)
def disable_user(username: str, _principal: UsersWrite, security: SecurityDep) -> None:
    security.accounts.set_disabled(username, True)


@router.get("/api/v1/api-keys")
def list_api_keys(_principal: UsersRead, security: SecurityDep) -> dict[str, Any]:
    return {"keys": list(security.accounts.list_api_keys())}


@router.post("/api/v1/api-keys", status_code=201)
def create_api_key(
    body: NewApiKey, _principal: UsersWrite, security: SecurityDep
) -> dict[str, Any]:
    key = security.accounts.create_api_key(
        body.name, role=body.role, scopes=body.scopes, care_units=body.care_units
    )
    return {"key": key, "note": "shown once: store it now; medhub keeps only a digest"}


@router.delete("/api/v1/api-keys/{prefix}", status_code=204)
def revoke_api_key(prefix: str, _principal: UsersWrite, security: SecurityDep) -> None:
    security.accounts.revoke_api_key(prefix)
