"""The dashboards under ``/ui``: one page per role, a page per patient, and the ``/ws`` feed.

Pages are rendered on the server (Jinja2) and kept current by a little
JavaScript of our own (``static/ui.js``): the live feed, acknowledging alerts,
the vitals chart drawn as inline SVG, and the prescribing form. Nothing is
built with Node and no library is shipped, so ``make run`` serves them as is.

Which roles see which page (a role's own dashboard is where ``/ui`` sends it):

==============  =================================================
page            roles
==============  =================================================
/ui/nurse       nurse, physician, admin
/ui/physician   physician, admin
/ui/pharmacist  pharmacist, admin
/ui/admin       admin
/ui/patients/x  any role that may read Patient and Observation, for a
                patient on its units (403 otherwise)
==============  =================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from medhub.api import ui_session, ui_socket
from medhub.api.deps import ContextDep
from medhub.api.permissions import Principal
from medhub.api.ui_desks import admin_view, pharmacist_view
from medhub.api.ui_session import PAGE_ROLES, render_page
from medhub.api.ui_views import medication_warnings, patient_view, ward_view

pages = APIRouter(prefix="/ui", include_in_schema=False)


def _for(page: str) -> Callable[[Principal], bool]:
    return lambda principal: principal.role in PAGE_ROLES[page]


@pages.get("/nurse")
def nurse_page(request: Request, context: ContextDep) -> Response:
    return render_page(
        request,
        context,
        "nurse.html",
        lambda principal: ward_view(context, principal, request),
        allowed=_for("nurse"),
    )


@pages.get("/physician")
def physician_page(request: Request, context: ContextDep) -> Response:
    def build(principal: Principal) -> dict[str, Any]:
        view = ward_view(context, principal, request)
        by_id = {p.id: p for p in view["patients"]}
        view["warnings"] = medication_warnings(context, principal, by_id)
        return view

    return render_page(request, context, "physician.html", build, allowed=_for("physician"))


@pages.get("/pharmacist")
def pharmacist_page(request: Request, context: ContextDep) -> Response:
    return render_page(
        request,
        context,
        "pharmacist.html",
        lambda principal: pharmacist_view(context, principal, request),
        allowed=_for("pharmacist"),
    )


@pages.get("/admin")
def admin_page(request: Request, context: ContextDep) -> Response:
    return render_page(
        request,
        context,
        "admin.html",
        lambda principal: admin_view(context, principal, request),
        allowed=_for("admin"),
    )


@pages.get("/patients/{patient_id}")
def patient_page(patient_id: str, request: Request, context: ContextDep) -> Response:
    return render_page(
        request,
        context,
        "patient.html",
        lambda principal: patient_view(context, principal, request, patient_id),
        allowed=lambda p: p.can("Patient", "read") and p.can("Observation", "read"),
    )


#: Everything the dashboards serve: ``app.include_router(ui_pages.router)``.
router = APIRouter()
router.include_router(ui_session.router)
router.include_router(pages)
router.include_router(ui_socket.router)
