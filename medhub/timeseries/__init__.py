"""The vital-sign sample store: batch ingest, rollups and queries."""
