"""``GET /metrics``: the Prometheus text exposition (format 0.0.4) of :mod:`medhub.metrics`.

Open like ``/health``: Prometheus scrapes without a user's token, and the
metrics carry no patient data (their labels are bounded sets; see
:mod:`medhub.metrics`). Not audited either (:mod:`medhub.api.audit` records
access to patient data, and a scrape every 15 s would bury the trail), and
not in the OpenAPI document, which describes the API rather than the
monitoring. Restrict it at the network or ingress where the topology
leaks something (docs/metrics.md).

A plain ``def``: the scrape-time sources query the database, which runs in
the thread pool, never on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from medhub.api.deps import ContextDep
from medhub.metrics import CONTENT_TYPE, exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(context: ContextDep) -> Response:
    return Response(exposition(context.metrics), media_type=CONTENT_TYPE)
