"""The HTTP API: FHIR R4 under ``/fhir`` and ``/health``.

Built by :func:`medhub.api.app.create_app`.
"""
