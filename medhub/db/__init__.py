"""Relational database plumbing shared by the SQL stores: engine, metadata, time.

It holds no tables of its own; each part defines its tables on :data:`metadata`
and the Alembic migrations in :mod:`medhub.migrations` create them.
"""
