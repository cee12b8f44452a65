"""What the routes get from the composition root, as typed FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request

from medhub.cds.alert_store import AlertService
from medhub.cds.medication_knowledge import KnowledgeBase, load_default_knowledge
from medhub.devices.registry import DeviceRegistry
from medhub.fhir.sql_store import SqlResourceStore
from medhub.fhir.store import ResourceStore
from medhub.hl7.inbound import Hl7Inbound
from medhub.timeseries.sample_store import SampleStore


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """The state of one configured component, as ``/health`` reports it."""

    status: Literal["up", "down", "disabled"]
    detail: str = ""


HealthCheck = Callable[[], ComponentHealth]


@dataclass
class ApiContext:
    """Everything the HTTP API needs, wired by :mod:`medhub.cli`."""

    store: ResourceStore
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    inbound: Hl7Inbound | None = None
    sql_store: SqlResourceStore | None = None
    devices: DeviceRegistry | None = None
    samples: SampleStore | None = None
    alerts: AlertService | None = None
    #: Called after a binding changes, so sample attribution picks it up at once.
    on_binding_change: Callable[[str], None] | None = None
    #: The medication knowledge base the CDS Hooks services check against.
    medication_knowledge: Callable[[], KnowledgeBase] = load_default_knowledge


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]
