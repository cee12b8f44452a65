"""The ``medhub`` command.

``serve`` runs the HTTP API, the MLLP listener and the outbound senders in one
process; ``migrate`` brings the schema up to date; ``import`` loads HL7 v2
files; ``hl7 …`` holds the interface analyst's tools (see :mod:`medhub.cli_hl7`).
Wiring lives in :mod:`medhub.wiring`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
import uvicorn

from medhub.api.app import create_app
from medhub.cli_auth import add_auth_commands
from medhub.cli_hl7 import add_hl7_commands
from medhub.cli_simulate import add_simulate_commands
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.errors import MedhubError
from medhub.hl7.batch import split_batch
from medhub.logs import configure_logging
from medhub.migrations import upgrade
from medhub.timeseries.schema import migrate as migrate_samples
from medhub.wiring import api_context, build

log = structlog.get_logger(__name__)


async def serve(settings: Settings) -> None:
    components = build(settings)
    if settings.auto_migrate:
        await asyncio.to_thread(upgrade, components.store.engine)
        if components.devices is not None:
            await asyncio.to_thread(components.devices.migrate)
    http = settings.http
    tls = http.tls_cert_file is not None
    app = create_app(api_context(components), cors_origins=settings.auth.cors_origins, hsts=tls)
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ssl_certfile=str(http.tls_cert_file) if http.tls_cert_file else None,
        ssl_keyfile=str(http.tls_key_file) if http.tls_key_file else None,
        ssl_ca_certs=str(http.tls_client_ca_file) if http.tls_client_ca_file else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if http.tls_client_ca_file else ssl.CERT_NONE,
    )
    server = uvicorn.Server(config)
    await components.committer.start()
    if components.mllp is not None:
        await components.mllp.start()
    for sender in components.senders:
        await sender.start()
    if components.devices is not None:
        await components.devices.start()
    if components.alerts is not None:
        components.alerts.start()
    # What start-up built (modules, models, caches) lives as long as the process: keep it
    # out of the collector's full passes, which stop every thread and took 120-216 ms
    # over it once device samples flowed, 18-40 ms without it (bench/alert_latency.py).
    gc.collect()
    gc.freeze()
    log.info("medhub.started", settings=settings.redacted())
    try:
        await server.serve()
    finally:
        if components.mllp is not None:
            await components.mllp.close()
        for sender in components.senders:
            await sender.close()
        if components.devices is not None:
            await components.devices.close()
        if components.alerts is not None:
            await components.alerts.close()
        await components.committer.close()
        components.store.close()
        log.info("medhub.stopped")


def _cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
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
    commands.add_parser("serve", help="run the HTTP API and the MLLP listener").set_defaults(
        handler=_cmd_serve
    )
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
