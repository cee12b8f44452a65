"""Pure patch functions for the FHIR ``patch`` interaction (FHIR R4 http.html#patch).

A FHIR server accepts two patch formats, and this module applies both:

* JSON Patch (RFC 6902, ``application/json-patch+json``), applied with the
  ``jsonpatch`` library, one operation at a time so an error can name the
  operation that failed;
* FHIRPath Patch (FHIR R4 fhirpatch.html), a ``Parameters`` resource whose
  ``operation`` parameters name their target with a FHIRPath expression,
  evaluated with ``fhirpathpy`` against the R4 model (so choice elements such
  as ``Observation.value`` resolve).

Both functions are pure: they return a new dict and never modify their
arguments. The caller validates the result as a FHIR resource before storing
it. Errors (see :mod:`medhub.errors`):

* :class:`~medhub.errors.InputError` (400): the patch document itself is
  malformed; the resource was not looked at.
* :class:`~medhub.errors.InvalidResourceError` (422): a well-formed patch
  cannot be applied to this resource (a failed JSON Patch ``test``, a path that
  matches nothing or more than one element, a change of ``resourceType`` or
  ``id``, which FHIR R4 http.html#patch forbids).

Every issue's ``expression`` names the patch element at fault:
``Patch[2].path`` for JSON Patch, ``Parameters.parameter[1].part[path]`` for
FHIRPath Patch.
"""

from __future__ import annotations

from medhub.fhir.fhirpath_patch import apply_fhirpath_patch
from medhub.fhir.json_patch import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
