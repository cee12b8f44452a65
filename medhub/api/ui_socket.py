"""``/ws``: the dashboards' live feed, one WebSocket per open page.

The socket is authenticated like the pages: the ``medhub_session`` cookie
(sent by the browser with the handshake; SameSite=Strict keeps other sites
from opening a socket with it), or ``?access_token=`` / a Bearer header for
other clients. The server accepts the handshake and then closes with

* **4401** when there is no valid token, and when the token expires while
  connected (the page refreshes its session and reconnects: revocation is by
  expiry, so a socket must not outlive its token);
* **4403** when the role may see nothing live, or the ``Origin`` is another
  site's (cross-site WebSocket hijacking);
* **4408** when the client fell too far behind (its queue filled up).

Each event from :class:`~medhub.api.live.LiveHub` is sent only if the
principal's role may read its area and the patient is on one of its care
units (:meth:`~medhub.api.patient_access.PatientAccess.visible`, looked up off
the event loop and remembered for a few seconds). Every patient whose data
was sent is named in an AuditEvent, written every few minutes and on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.requests import Request

from medhub.api.deps import ApiContext
from medhub.api.live import LiveEvent, LiveHub, Subscription, hub_of
from medhub.api.permissions import Principal
from medhub.api.security import LOCAL, SESSION_COOKIE
from medhub.api.tokens import decode_access_token
from medhub.errors import AuthenticationError, MedhubError

log = structlog.get_logger(__name__)
router = APIRouter()

UNAUTHENTICATED: Final = 4401
FORBIDDEN: Final = 4403
TOO_SLOW: Final = 4408
#: Areas with live events: a role that can read none of them has nothing to receive.
LIVE_AREAS: Final = ("Observation", "alerts", "MedicationRequest")
VISIBILITY_SECONDS: Final = 5.0
AUDIT_SECONDS: Final = 300.0


@dataclass
class Client:
    """One connected socket's principal, visibility cache and what it was sent."""

    principal: Principal
    context: ApiContext
    expires: float | None
    visible: dict[str, tuple[float, bool]] = field(default_factory=dict)
    sent_patients: set[str] = field(default_factory=set)

    async def may_see(self, event: LiveEvent) -> bool:
        if event.broadcast:  # about the feed, not a patient
            return True
        principal = self.principal
        if not principal.can(event.area, "read"):
            return False
        if event.audience is not None and principal.role not in event.audience:
            return False
        if event.patient is None:
            return not (principal.unit_bound or principal.patient)
        access = self.context.access
        if access is None:
            return principal.patient in (None, event.patient)
        now = time.monotonic()
        cached = self.visible.get(event.patient)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            allowed = await asyncio.to_thread(access.visible, principal, event.patient)
        except Exception as exc:  # the store is down: show nothing rather than guess
            log.warning("live.visibility_unknown", patient=event.patient, reason=str(exc))
            return False
        self.visible[event.patient] = (now + VISIBILITY_SECONDS, allowed)
        return allowed


def _token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return websocket.cookies.get(SESSION_COOKIE) or websocket.query_params.get("access_token")


def authenticate(websocket: WebSocket, context: ApiContext) -> tuple[Principal, float | None]:
    """The socket's principal and when its token expires (monotonic seconds, None: never)."""
    security = context.security
    if security is None:
        return LOCAL, None
    token = _token(websocket)
    if not token:
        raise AuthenticationError("no dashboard session: log in at /ui/login")
    client = websocket.client.host if websocket.client else ""
    now = security.clock()
    principal = decode_access_token(
        token, secret=security.secret, now=now, client=client, accepted=security.accepted_secrets
    )
    claims = jwt.decode(token, options={"verify_signature": False})  # verified just above
    left = float(claims["exp"]) - now.timestamp()
    return principal, time.monotonic() + left


def same_origin(websocket: WebSocket) -> bool:
    """A browser's handshake from another site's page is refused (no Origin: not a browser)."""
    origin = websocket.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


def _write_audit(websocket: WebSocket, client: Client, patients: set[str]) -> None:
    """Commit one AuditEvent naming ``patients`` (runs in a worker thread)."""
    trail = client.context.audit
    if trail is None:
        return
    request = Request({**websocket.scope, "type": "http", "method": "GET"})
    try:
        trail.record(
            trail.event(
                principal=client.principal,
                request=request,
                status=200,
                entities=(),
                patients=patients,
            )
        )
    except Exception as exc:  # logged, never lost in a future nobody awaits
        reason = exc.message if isinstance(exc, MedhubError) else repr(exc)
        log.error("live.audit_not_recorded", error=reason, patients=len(patients))


async def _audit(websocket: WebSocket, client: Client) -> None:
    """Record the patients this socket was sent data about, then start a new list.

    The list is taken on the event loop (no thread races the sender adding to
    it) and the write is shielded: a socket closing, or its task being
    cancelled, must not cancel the write before a worker thread has picked it
    up, which is what ``await asyncio.to_thread(...)`` alone would do.
    """
    if client.context.audit is None or not client.sent_patients:
        return
    patients, client.sent_patients = client.sent_patients, set()
    loop = asyncio.get_running_loop()
    write = loop.run_in_executor(None, _write_audit, websocket, client, patients)
    await asyncio.shield(write)


async def _send_events(
    websocket: WebSocket, subscription: Subscription, client: Client
) -> tuple[int, str]:
    """Forward what the client may see until it is too slow or its token expires."""
    audited = time.monotonic()
    while True:
        timeout = None if client.expires is None else client.expires - time.monotonic()
        if timeout is not None and timeout <= 0:
            return UNAUTHENTICATED, "the session expired: refresh and reconnect"
        try:
            event = await asyncio.wait_for(subscription.queue.get(), timeout)
        except TimeoutError:
            continue
        if subscription.overflowed:
            return TOO_SLOW, "too many events queued: reload"
        if await client.may_see(event):
            # Noted before the send: a socket closed while the send is in flight may have
            # shown the data already, and an audit naming one patient too many is the
            # safe side of that race (the record would otherwise be lost with the task).
            if event.patient is not None:
                client.sent_patients.add(event.patient)
            await websocket.send_json(event.message())
        if time.monotonic() - audited > AUDIT_SECONDS:
            audited = time.monotonic()
            await _audit(websocket, client)


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


def _hello(principal: Principal, hub: LiveHub) -> dict[str, Any]:
    units = sorted(principal.care_units) if principal.care_units is not None else ["*"]
    return {
        "type": "hello",
        "subject": principal.subject,
        "role": principal.role,
        "units": units,
        "live": hub.feed_live,  # a page opened during a feed outage must say so at once
    }


@router.websocket("/ws")
async def live_socket(websocket: WebSocket) -> None:
    context: ApiContext = websocket.app.state.context
    hub: LiveHub | None = hub_of(websocket.app)
    await websocket.accept()
    try:
        principal, expires = authenticate(websocket, context)
    except MedhubError as exc:
        await websocket.close(code=UNAUTHENTICATED, reason=exc.message[:120])
        return
    if not same_origin(websocket):
        await websocket.close(code=FORBIDDEN, reason="cross-site socket refused")
        return
    if hub is None or not any(principal.can(area, "read") for area in LIVE_AREAS):
        await websocket.close(code=FORBIDDEN, reason=f"nothing live for role {principal.role}")
        return
    client = Client(principal, context, expires)
    subscription = hub.subscribe()
    sender = asyncio.create_task(_send_events(websocket, subscription, client))
    reader = asyncio.create_task(_drain(websocket))
    try:
        await websocket.send_json(_hello(principal, hub))
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and not sender.cancelled() and sender.exception() is None:
            code, reason = sender.result()
            with contextlib.suppress(Exception):
                await websocket.close(code=code, reason=reason)
    finally:
        hub.unsubscribe(subscription)
        for task in (sender, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await _audit(websocket, client)
