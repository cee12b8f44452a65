"""What the routes get from the composition root, as typed FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import Depends, Request

from medhub.cds.alert_store import AlertService
from medhub.cds.medication_knowledge import KnowledgeBase, load_default_knowledge
from medhub.cds.news2_service import News2Service
from medhub.devices.registry import DeviceRegistry
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import ResourceStore
from medhub.hl7.inbound import Hl7Inbound
from medhub.metrics import ScrapeCollector
from medhub.timeseries.sample_store import SampleStore

if TYPE_CHECKING:  # security imports this module for ApiContext
    from medhub.api.audit import AuditTrail
    from medhub.api.live import LiveHub
    from medhub.api.patient_access import PatientAccess
    from medhub.api.security import Security


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """The state of one configured component, as ``/ready`` reports it."""

    status: Literal["up", "down", "disabled"]
    detail: str = ""


HealthCheck = Callable[[], ComponentHealth]


@dataclass
class ApiContext:
    """Everything the HTTP API needs, wired by :mod:`medhub.cli`."""

    store: ResourceStore
    #: What ``/ready`` checks, by component name.
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    #: The roles this process runs (``medhub serve --role``), as ``/health`` reports them.
    roles: frozenset[str] = frozenset({"api", "mllp", "devices", "worker"})
    inbound: Hl7Inbound | None = None
    sql_store: SqlResourceStore | None = None
    devices: DeviceRegistry | None = None
    samples: SampleStore | None = None
    alerts: AlertService | None = None
    #: NEWS2 per patient from the latest vitals (``GET /api/v1/patients/{id}/news2``).
    news2: News2Service | None = None
    #: Called after a binding changes, so sample attribution picks it up at once.
    on_binding_change: Callable[[str], None] | None = None
    #: The medication knowledge base the CDS Hooks services check against.
    medication_knowledge: Callable[[], KnowledgeBase] = load_default_knowledge
    #: Logins, tokens and limits; None only for apps built by hand in unit tests.
    security: Security | None = None
    #: Which patients a unit-bound principal may see (None: everyone sees everyone).
    access: PatientAccess | None = None
    #: Where AuditEvents of patient-data access are written (None: not audited).
    audit: AuditTrail | None = None
    #: The dashboards' live feed (None: the app makes one fed by ``alerts`` alone).
    live: LiveHub | None = None
    #: Gauges read at each ``/metrics`` scrape (queue depths, pool use; None: event metrics only).
    metrics: ScrapeCollector | None = None


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]
