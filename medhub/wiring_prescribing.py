"""Wiring of the API's write hooks: the MedicationRequest rules with their knowledge base,
outbox and pharmacy queue, and append-only AuditEvents, around the resource store.
"""

from __future__ import annotations

from collections.abc import Mapping

from medhub.cds.medication_knowledge import (
    KnowledgeBase,
    load_default_knowledge,
    load_interactions_csv,
)
from medhub.cds.prescribing import PrescriptionHook
from medhub.config import Settings
from medhub.db.outbox import SqlEventOutbox
from medhub.errors import ConfigurationError, MedhubError
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.fhir.store import Resources
from medhub.fhir.write_hooks import AppendOnlyHook, HookedStore, ResourceHook
from medhub.fhir.write_rules import utc_now
from medhub.hl7.er7_fields import HierarchicDesignator
from medhub.hl7.pharmacy_order_builder import PharmacyOrderHeader
from medhub.hl7.pharmacy_orders import PharmacyOrderSink


def load_knowledge(settings: Settings) -> KnowledgeBase:
    """The shipped knowledge base, plus the site's interaction CSV when one is configured."""
    knowledge = load_default_knowledge()
    path = settings.prescribing.interactions_csv
    if path is None:
        return knowledge
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the interactions CSV {path}: {exc}") from exc
    try:
        return load_interactions_csv(text, base=knowledge, source_name=path.name)
    except MedhubError as exc:
        raise ConfigurationError(f"{path}: {exc.message}") from exc


def _hd(namespace: str) -> HierarchicDesignator | None:
    return HierarchicDesignator(namespace) if namespace else None


def _header(settings: Settings) -> PharmacyOrderHeader:
    prescribing = settings.prescribing
    return PharmacyOrderHeader(
        sending_application=HierarchicDesignator(prescribing.sending_application),
        sending_facility=_hd(prescribing.sending_facility),
        receiving_application=HierarchicDesignator(prescribing.receiving_application),
        receiving_facility=_hd(prescribing.receiving_facility),
        message_type=prescribing.pharmacy_message_type,
    )


def hooked_api_store(
    settings: Settings, store: SqlResourceStore, knowledge: KnowledgeBase
) -> HookedStore:
    """The store the API writes through: AuditEvents append-only, MedicationRequests
    checked and sent to the pharmacy (unless ``MEDHUB_PRESCRIBING__CHECKS`` is off)."""
    prescribing = settings.prescribing
    audit_events = AppendOnlyHook("AuditEvent")
    if not prescribing.checks:
        return HookedStore(store, lambda _resources: {"AuditEvent": audit_events})
    destination = prescribing.pharmacy_destination
    names = {d.name for d in settings.hl7_destinations}
    if destination is not None and destination not in names:
        raise ConfigurationError(
            f"MEDHUB_PRESCRIBING__PHARMACY_DESTINATION is {destination!r}, "
            f"not one of the HL7 destinations {sorted(names)}"
        )
    header = _header(settings)

    def hooks(resources: Resources) -> Mapping[str, ResourceHook]:
        assert isinstance(resources, SqlResources)
        session = resources.session
        orders = None
        if destination is not None:
            orders = PharmacyOrderSink(session, destination=destination, header=header)
        hook = PrescriptionHook(
            knowledge=knowledge, outbox=SqlEventOutbox(session), orders=orders, clock=utc_now
        )
        return {"MedicationRequest": hook, "AuditEvent": audit_events}

    return HookedStore(store, hooks)
