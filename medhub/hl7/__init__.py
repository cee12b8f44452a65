"""HL7 v2: the ER7 parser, ACK/ERR builder, v2 -> FHIR mapping and the inbound message service."""
