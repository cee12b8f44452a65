"""``GET /health`` (liveness) and ``GET /ready`` (readiness), as orchestrators probe them.

``/health`` answers 200 while the process serves requests and checks nothing
else: a liveness probe that failed when the database was down would have every
replica restarted in a database outage, which helps nobody. ``/ready`` runs each
dependency's check (database, schema revision, MLLP listener, MQTT, …) and
answers 503 when one is down, so a load balancer stops sending work to a
replica that cannot do it. Both are open (no token): probes do not log in.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from medhub import __version__
from medhub.api.deps import ContextDep

router = APIRouter()


def _json(body: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.get("/health")
def health(context: ContextDep) -> Response:
    return _json({"status": "up", "version": __version__, "roles": sorted(context.roles)})


@router.get("/ready")
def ready(context: ContextDep) -> Response:
    components = {name: check() for name, check in context.health_checks.items()}
    down = [name for name, state in components.items() if state.status == "down"]
    body: dict[str, object] = {
        "status": "down" if down else "up",
        "version": __version__,
        "roles": sorted(context.roles),
        "components": {
            name: {"status": s.status, "detail": s.detail} for name, s in components.items()
        },
    }
    return _json(body, 503 if down else 200)
