"""The dashboards' session: login and logout pages, cookies, refresh, CSRF, and page rendering.

A login sets two cookies, both HttpOnly (no script reads them), SameSite=Strict
(no other site's page sends them) and Secure when medhub serves HTTPS:

* ``medhub_session``, path ``/``: the short-lived access token (JWT) that
  every route and the ``/ws`` socket accept, so the pages' own requests to
  ``/api/v1`` and ``/fhir`` need nothing else;
* ``medhub_refresh``, path ``/ui``: the refresh token, sent only to the
  dashboards, which spend it (:meth:`~medhub.api.accounts.Accounts.refresh`)
  when a page is loaded with an expired session, and from ``POST /ui/refresh``
  which the pages call before the access token runs out.

CSRF: besides SameSite=Strict, every state-changing ``/ui`` request must carry
an ``X-Requested-With`` header. The pages send their POSTs with ``fetch``,
which may add it; a cross-site form cannot, and a cross-site ``fetch`` with a
custom header needs a CORS preflight that medhub does not grant (OWASP CSRF
cheat sheet, "custom request headers").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from medhub import __version__
from medhub.api.accounts import Login
from medhub.api.deps import ApiContext, ContextDep
from medhub.api.permissions import Principal, Role
from medhub.api.security import REFRESH_COOKIE, SESSION_COOKIE, Security, principal_of
from medhub.api.tokens import issue_access_token
from medhub.api.ui_census import tile_cells
from medhub.errors import AuthenticationError, ForbiddenError, MedhubError, NotFoundError

router = APIRouter(prefix="/ui", include_in_schema=False)

HERE: Final = Path(__file__).parent
CSRF_HEADER: Final = "x-requested-with"
#: Each role's dashboard; roles without one get a page saying so.
HOME: Final[dict[Role, str]] = {
    "nurse": "/ui/nurse",
    "physician": "/ui/physician",
    "pharmacist": "/ui/pharmacist",
    "admin": "/ui/admin",
}
#: Which roles may open which dashboard (a role's own is where ``/ui`` sends it).
PAGE_ROLES: Final[dict[str, frozenset[Role]]] = {
    "nurse": frozenset({"nurse", "physician", "admin"}),
    "physician": frozenset({"physician", "admin"}),
    "pharmacist": frozenset({"pharmacist", "admin"}),
    "admin": frozenset({"admin"}),
}
_SAFE_NEXT: Final = re.compile(r"^/ui(/[A-Za-z0-9_\-./]*)?(\?[A-Za-z0-9_\-.=&%]*)?$")

ViewBuilder = Callable[[Principal], Mapping[str, Any]]


@functools.cache
def templates() -> Environment:
    """The Jinja2 environment of ``medhub/api/templates`` (autoescaped: names are data)."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["static"] = static_url
    environment.globals["version"] = __version__
    environment.globals["tile_cells"] = tile_cells
    return environment


def static_url(name: str) -> str:
    """The URL of a static file, with its modification time so a changed file is refetched."""
    path = HERE / "static" / name
    stamp = int(path.stat().st_mtime) if path.exists() else 0
    return f"/ui/static/{name}?v={stamp}"


def html(template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(templates().get_template(template).render(**values), status_code=status)


def home_of(principal: Principal) -> str | None:
    return HOME.get(principal.role)


def safe_next(value: str | None) -> str | None:
    """A post-login destination only if it is one of our own pages (no open redirect)."""
    if value and _SAFE_NEXT.match(value) and "//" not in value and "/ui/login" not in value:
        return value
    return None


def require_ui_header(request: Request) -> None:
    """403 for a state-changing ``/ui`` request without ``X-Requested-With`` (see above)."""
    if not request.headers.get(CSRF_HEADER):
        raise ForbiddenError("dashboard requests must be sent by the page (X-Requested-With)")


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _security(context: ApiContext) -> Security:
    if context.security is None:
        raise NotFoundError("this medhub runs without logins")
    return context.security


def set_session(response: Response, security: Security, login: Login) -> None:
    """Set the access-token and refresh-token cookies of a login or refresh."""
    now = security.clock()
    token = issue_access_token(
        login.principal, secret=security.secret, now=now, ttl=security.access_ttl
    )
    common: dict[str, Any] = {
        "httponly": True,
        "samesite": "strict",
        "secure": security.cookie_secure,
    }
    response.set_cookie(SESSION_COOKIE, token, path="/", **common)
    left = int((login.refresh_expires_at - now).total_seconds())
    response.set_cookie(REFRESH_COOKIE, login.refresh_token, path="/ui", max_age=left, **common)


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(REFRESH_COOKIE, path="/ui", httponly=True, samesite="strict")


def session_principal(
    request: Request, context: ApiContext
) -> tuple[Principal | None, Login | None]:
    """Who is logged in: the session token, else a transparent refresh with the refresh cookie.

    Returns the principal and, when it came from a refresh, the new login whose
    cookies the response must set; ``(None, None)`` when the user must log in.
    """
    try:
        return principal_of(request, context), None
    except AuthenticationError:
        pass
    token = request.cookies.get(REFRESH_COOKIE)
    if context.security is None or not token:
        return None, None
    try:
        login = context.security.accounts.refresh(token, client=_client(request))
    except AuthenticationError:
        return None, None
    request.state.principal = login.principal
    return login.principal, login


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/ui/login?next={target}", status_code=303)
    clear_session(response)
    return response


def _layout(context: ApiContext, principal: Principal) -> dict[str, Any]:
    security = context.security
    ttl = int(security.access_ttl.total_seconds()) if security is not None else 0
    units = sorted(principal.care_units) if principal.care_units is not None else ["all units"]
    return {
        "principal": principal,
        "units": units,
        "home": home_of(principal),
        "nav": [
            (page, f"/ui/{page}") for page, roles in PAGE_ROLES.items() if principal.role in roles
        ],
        "session_ttl": ttl,
        "logins": security is not None,
    }


def render_page(
    request: Request,
    context: ApiContext,
    template: str,
    build: ViewBuilder,
    *,
    allowed: Callable[[Principal], bool] = lambda _p: True,
) -> Response:
    """A dashboard page: log in first, check the role, build the view, render; errors as pages."""
    principal, login = session_principal(request, context)
    if principal is None:
        return _login_redirect(request)
    response: Response
    try:
        if not allowed(principal):
            raise ForbiddenError(f"this page is not for role {principal.role}")
        values = build(principal)
        response = html(template, **_layout(context, principal), current=request.url.path, **values)
    except MedhubError as exc:
        response = html(
            "error.html",
            status=exc.http_status,
            **_layout(context, principal),
            status_code=exc.http_status,
            message=exc.message,
        )
    if login is not None and context.security is not None:
        set_session(response, context.security, login)
    return response


# -- routes --------------------------------------------------------------------------


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16)
    next: str | None = Field(default=None, max_length=512)


@router.get("/login")
def login_page(request: Request, context: ContextDep, next: str | None = None) -> Response:
    principal, login = session_principal(request, context)
    if principal is not None:
        response: Response = RedirectResponse(
            safe_next(next) or home_of(principal) or "/ui", status_code=303
        )
        if login is not None and context.security is not None:
            set_session(response, context.security, login)
        return response
    return html("login.html", next=safe_next(next) or "", logins=context.security is not None)


@router.post("/login")
def login(body: LoginBody, request: Request, context: ContextDep) -> Response:
    require_ui_header(request)
    security = _security(context)
    result = security.accounts.login(
        body.username, body.password, totp=body.totp or None, client=_client(request)
    )
    location = safe_next(body.next) or home_of(result.principal) or "/ui"
    response = JSONResponse({"location": location, "role": result.principal.role})
    set_session(response, security, result)
    return response


@router.post("/refresh")
def refresh(request: Request, context: ContextDep) -> Response:
    """A new access token (and refresh token) before the current one expires."""
    require_ui_header(request)
    security = _security(context)
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise AuthenticationError("no dashboard session to refresh: log in again")
    result = security.accounts.refresh(token, client=_client(request))
    request.state.principal = result.principal
    response = JSONResponse({"expires_in": int(security.access_ttl.total_seconds())})
    set_session(response, security, result)
    return response


@router.post("/logout")
def logout(request: Request, context: ContextDep) -> Response:
    require_ui_header(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if token and context.security is not None:
        context.security.accounts.logout(token)
    response = JSONResponse({"location": "/ui/login"})
    clear_session(response)
    return response


@router.get("")
@router.get("/")
def dashboard_home(request: Request, context: ContextDep) -> Response:
    """``/ui``: the role's dashboard."""
    principal, login = session_principal(request, context)
    if principal is None:
        return _login_redirect(request)
    target = home_of(principal)
    response: Response
    if target is None:
        response = html(
            "error.html",
            status=403,
            **_layout(context, principal),
            status_code=403,
            message=f"There is no dashboard for role {principal.role}.",
        )
    else:
        response = RedirectResponse(target, status_code=303)
    if login is not None and context.security is not None:
        set_session(response, context.security, login)
    return response


_STATIC_NAME: Final = re.compile(r"^[a-z0-9_-]+\.(css|js)$")
_MEDIA: Final = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The pages' own CSS and JavaScript (no build step, no library: DESIGN.md ``make run``)."""
    path = HERE / "static" / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        raise NotFoundError(f"no static file {name!r}")
    return FileResponse(
        path,
        media_type=_MEDIA[name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "public, max-age=86400"},  # the URL carries the file's mtime
    )
