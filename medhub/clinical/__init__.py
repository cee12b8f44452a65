"""The canonical clinical model: FHIR R4 resources, identifiers and code maps.

Pure code only; every other layer may import it, it imports none of them.
"""
