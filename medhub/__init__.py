"""medhub: a healthcare interoperability and device-integration hub.

HL7 v2 over MLLP, FHIR R4 over REST and device streams come in; FHIR R4
resources (the canonical model, :mod:`medhub.clinical`) are stored; vital-sign
alerts go out. See DESIGN.md for the layout and the layer rule.
"""

__version__ = "0.1.0"
