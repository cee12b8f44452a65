"""``GET /health``: one line per configured component; 503 if any is down."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from medhub import __version__
from medhub.api.deps import ContextDep

router = APIRouter()


@router.get("/health")
def health(context: ContextDep) -> Response:
    components = {name: check() for name, check in context.health_checks.items()}
    down = [name for name, state in components.items() if state.status == "down"]
    body = {
        "status": "down" if down else "up",
        "version": __version__,
        "components": {
            name: {"status": s.status, "detail": s.detail} for name, s in components.items()
        },
    }
    return Response(
        orjson.dumps(body), status_code=503 if down else 200, media_type="application/json"
    )
