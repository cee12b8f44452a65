"""FHIR R4 semantics: the resource store (versions, history, search indexes) and search.

Pure parts (index extraction, search parameter definitions) do no I/O; the SQL
store is in :mod:`medhub.fhir.sql_store`.
"""
