"""The ``medhub`` command and the composition root: the one place that reads settings
and wires stores, services and transports together.

Commands: ``serve`` (HTTP API and MLLP listener in one process), ``migrate``
(bring the database schema up to date), ``hl7 send`` (send ER7 files over MLLP
and print each ACK).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn

from medhub.adapters.group_commit import GroupCommitter
from medhub.adapters.mllp_client import MllpClient
from medhub.adapters.mllp_server import MllpServer, MllpServerConfig, server_ssl_context
from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.config import Settings
from medhub.db.engine import make_engine
from medhub.errors import ConfigurationError, MedhubError
from medhub.fhir.sql_store import SqlResourceStore, utc_now
from medhub.hl7.ack import ack_accepts
from medhub.hl7.batch import split_batch
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.message_log import MessageQuery, SqlMessageLog, message_summary
from medhub.hl7.reprocess import reprocess
from medhub.hl7.sql_units import sql_inbound_units
from medhub.logs import configure_logging
from medhub.migrations import upgrade

log = structlog.get_logger(__name__)


@dataclass
class Components:
    """Everything ``serve`` runs, built from settings."""

    settings: Settings
    store: SqlResourceStore
    inbound: Hl7Inbound
    committer: GroupCommitter
    mllp: MllpServer | None


def _mllp_tls(settings: Settings) -> ssl.SSLContext | None:
    mllp = settings.mllp
    if mllp.tls_cert_file is None and mllp.tls_key_file is None:
        if mllp.tls_client_ca_file is not None:
            raise ConfigurationError("MEDHUB_MLLP__TLS_CLIENT_CA_FILE needs a server certificate")
        return None
    if mllp.tls_cert_file is None or mllp.tls_key_file is None:
        raise ConfigurationError("MLLP TLS needs both MEDHUB_MLLP__TLS_CERT_FILE and _KEY_FILE")
    try:
        return server_ssl_context(
            str(mllp.tls_cert_file),
            str(mllp.tls_key_file),
            str(mllp.tls_client_ca_file) if mllp.tls_client_ca_file else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the MLLP TLS certificate or key: {exc}") from exc


def build(settings: Settings) -> Components:
    engine = make_engine(settings.database_url.get_secret_value(), echo=settings.database_echo)
    store = SqlResourceStore(engine, clock=utc_now)
    units = sql_inbound_units(store, validate=settings.mllp.validate_mapped)
    inbound = Hl7Inbound(units, clock=utc_now)
    # SQLite has one writer at a time; a second worker would only wait on the lock.
    workers = settings.mllp.commit_workers or (1 if engine.dialect.name == "sqlite" else 2)
    committer = GroupCommitter(
        inbound.handle_batch, max_batch=settings.mllp.max_batch, workers=workers
    )
    mllp = None
    if settings.mllp.enabled:
        mllp = MllpServer(
            MllpServerConfig(
                host=settings.mllp.host,
                port=settings.mllp.port,
                max_frame_bytes=settings.mllp.max_frame_bytes,
                idle_timeout_seconds=settings.mllp.idle_timeout_seconds,
                ssl_context=_mllp_tls(settings),
            ),
            handler=committer.submit,
            on_oversize=inbound.reject,
        )
    return Components(settings, store, inbound, committer, mllp)


def _database_health(store: SqlResourceStore) -> ComponentHealth:
    try:
        store.ping()
    except MedhubError as exc:
        return ComponentHealth("down", exc.message)
    return ComponentHealth("up", store.engine.dialect.name)


def api_context(components: Components) -> ApiContext:
    mllp = components.mllp

    def mllp_health() -> ComponentHealth:
        if mllp is None:
            return ComponentHealth("disabled")
        try:
            return ComponentHealth("up", f"port {mllp.port}")
        except RuntimeError:
            return ComponentHealth("down", "not listening")

    checks = {"database": lambda: _database_health(components.store), "mllp": mllp_health}
    return ApiContext(
        store=components.store,
        health_checks=checks,
        inbound=components.inbound,
        sql_store=components.store,
    )


async def serve(settings: Settings) -> None:
    components = build(settings)
    if settings.auto_migrate:
        await asyncio.to_thread(upgrade, components.store.engine)
    app = create_app(api_context(components))
    config = uvicorn.Config(
        app,
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    await components.committer.start()
    if components.mllp is not None:
        await components.mllp.start()
    log.info("medhub.started", settings=settings.redacted())
    try:
        await server.serve()
    finally:
        if components.mllp is not None:
            await components.mllp.close()
        await components.committer.close()
        components.store.close()
        log.info("medhub.stopped")


def _cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    log.info("medhub.migrated", database=settings.redacted()["database_url"])
    return 0


def _store(settings: Settings) -> SqlResourceStore:
    engine = make_engine(settings.database_url.get_secret_value(), echo=settings.database_echo)
    return SqlResourceStore(engine, clock=utc_now)


def _cmd_hl7_messages(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    query = MessageQuery(
        status=args.status,
        sender=args.sender,
        control_id=args.control_id,
        message_type=args.type,
        limit=args.limit,
    )
    with store.session() as session:
        rows = [message_summary(row) for row in SqlMessageLog(session).search(query)]
    store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['id']:>8}  {row['received_at']}  {row['status']:<11} {row['ack_code']}  "
            f"{row['message_type']:<8} {row['control_id']:<24} {row['sender']}"
            + (f"  -- {row['error']}" if row["error"] else "")
        )
    return 0


def _cmd_hl7_show(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    with store.session() as session:
        row = SqlMessageLog(session).get(args.id)
        raw = row.raw
    store.close()
    sys.stdout.write(raw.decode("utf-8", errors="replace").replace("\r", "\n"))
    return 0


def _cmd_hl7_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and not args.status:
        raise ConfigurationError("give message ids or --status (e.g. --status dead-letter)")
    components = build(settings)
    results = reprocess(components.store, components.inbound, ids=args.ids, status=args.status)
    components.store.close()
    for result in results:
        print(
            f"{result.message_id:>8}  {result.control_id:<24} -> {result.status} "
            f"{result.ack_code}" + (f"  -- {result.error}" if result.error else "")
        )
    return 1 if any(r.ack_code != "AA" for r in results) else 0


def _cmd_hl7_send(settings: Settings, args: argparse.Namespace) -> int:
    port = args.port or settings.mllp.port
    failures = 0
    with MllpClient(args.host, port, timeout=args.timeout) as client:
        for path in args.files:
            for message in split_batch(Path(path).read_bytes()).messages:
                ack = client.send(message)
                print(ack.decode("utf-8", errors="replace").replace("\r", "\n"))
                if not ack_accepts(ack, message):
                    failures += 1
    return 1 if failures else 0


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
    hl7 = commands.add_parser("hl7", help="HL7 v2 tools").add_subparsers(
        dest="hl7_command", required=True
    )
    send = hl7.add_parser("send", help="send ER7 files over MLLP and print the ACKs")
    send.add_argument("files", nargs="+", help="files with one or more ER7 messages")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=None, help="default: MEDHUB_MLLP_PORT")
    send.add_argument("--timeout", type=float, default=30.0)
    send.set_defaults(handler=_cmd_hl7_send)
    load = commands.add_parser("import", help="load HL7 v2 files or batches into the store")
    load.add_argument("files", nargs="+")
    load.set_defaults(handler=_cmd_import)
    messages = hl7.add_parser("messages", help="list the inbound message log, newest first")
    messages.add_argument(
        "--status", choices=["accepted", "stored", "duplicate", "dead-letter", "rejected"]
    )
    messages.add_argument("--sender", help="MSH-3|MSH-4 as logged, e.g. 'ADTApp|GHH'")
    messages.add_argument("--control-id", help="MSH-10")
    messages.add_argument("--type", help="message type, e.g. ADT^A01")
    messages.add_argument("--limit", type=int, default=50)
    messages.add_argument("--json", action="store_true", help="print JSON instead of a table")
    messages.set_defaults(handler=_cmd_hl7_messages)
    show = hl7.add_parser("show", help="print one logged message as received")
    show.add_argument("id", type=int)
    show.set_defaults(handler=_cmd_hl7_show)
    again = hl7.add_parser("reprocess", help="run logged messages through the inbound path again")
    again.add_argument("ids", nargs="*", type=int, help="message log ids")
    again.add_argument(
        "--status",
        choices=["dead-letter", "stored", "rejected"],
        help="reprocess every message with this status",
    )
    again.set_defaults(handler=_cmd_hl7_reprocess)
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
