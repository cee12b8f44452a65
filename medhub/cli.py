"""The ``medhub`` command.

``serve`` runs the HTTP API, the MLLP listener, device ingest and the outbound
senders, in one process or as separate roles (see :mod:`medhub.serve`);
``migrate`` brings the schema up to date; ``import`` loads HL7 v2 files;
``hl7 …`` holds the interface analyst's tools (see :mod:`medhub.cli_hl7`).
Wiring lives in :mod:`medhub.wiring`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from medhub.cli_auth import add_auth_commands
from medhub.cli_hl7 import add_hl7_commands
from medhub.cli_simulate import add_simulate_commands
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.errors import MedhubError
from medhub.hl7.batch import split_batch
from medhub.logs import configure_logging
from medhub.migrations import upgrade
from medhub.serve import parse_roles, serve
from medhub.timeseries.schema import migrate as migrate_samples
from medhub.wiring import ROLES, build

log = structlog.get_logger(__name__)


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    roles = parse_roles(args.role)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, roles))
    return 0


def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url.get_secret_value())
    samples = make_engine(settings.sample_store_url())
    try:
        upgrade(engine)
        migrate_samples(samples)
    finally:
        engine.dispose()
        samples.dispose()
    log.info("medhub.migrated", database=settings.redacted()["database_url"])
    return 0


def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Load HL7 v2 files (single messages or FHS/BHS batches) straight into the store."""
    components = build(settings)
    if settings.auto_migrate:
        upgrade(components.store.engine)
    counts: dict[str, int] = {}
    try:
        for path in args.files:
            messages = split_batch(Path(path).read_bytes()).messages
            for start in range(0, len(messages), 200):
                chunk = [(m, f"import:{path}") for m in messages[start : start + 200]]
                for outcome in components.inbound.handle_batch(chunk):
                    counts[outcome.status] = counts.get(outcome.status, 0) + 1
    finally:
        components.store.close()
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no messages")
    return 1 if set(counts) - {"accepted", "stored", "duplicate"} else 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="medhub", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the HTTP API, the MLLP listener and the rest")
    run.add_argument(
        "--role",
        action="append",
        metavar="ROLE",
        help=f"run only this role (all, {', '.join(ROLES)}); repeat or comma-separate "
        "for several; default: all",
    )
    run.set_defaults(handler=_cmd_serve)
    commands.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        handler=_cmd_migrate
    )
    load = commands.add_parser("import", help="load HL7 v2 files or batches into the store")
    load.add_argument("files", nargs="+")
    load.set_defaults(handler=_cmd_import)
    add_hl7_commands(commands)
    add_simulate_commands(commands)
    add_auth_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        code: int = args.handler(settings, args)
    except MedhubError as exc:
        print(f"medhub: {exc.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
