"""``medhub hl7 …``: the interface analyst's commands (send, message log, reprocess, outbound)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medhub.adapters.mllp_client import MllpClient
from medhub.config import Settings
from medhub.errors import ConfigurationError
from medhub.hl7 import outbound_queue
from medhub.hl7.ack import ack_accepts
from medhub.hl7.batch import split_batch
from medhub.hl7.message_log import MessageQuery, SqlMessageLog, message_summary
from medhub.hl7.reprocess import reprocess
from medhub.wiring import build, make_store


def _cmd_hl7_messages(settings: Settings, args: argparse.Namespace) -> int:
    store = make_store(settings)
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
    store = make_store(settings)
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


def _print_outbound(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        print(
            f"{row['id']:>8}  {row['destination']:<16} {row['status']:<8} "
            f"attempts={row['attempts']:<3} {row['control_id']:<24}"
            + (f"  -- {row['last_error']}" if row.get("last_error") else "")
        )


def _outbound_view(message: outbound_queue.OutboundMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "destination": message.destination,
        "control_id": message.control_id,
        "status": message.status,
        "attempts": message.attempts,
        "next_attempt_at": message.next_attempt_at,
        "last_error": message.last_error,
        "ack_code": message.ack_code,
        "sent_at": message.sent_at,
    }


def _cmd_outbound_list(settings: Settings, args: argparse.Namespace) -> int:
    store = make_store(settings)
    with store.session() as session:
        rows = [
            _outbound_view(m)
            for m in outbound_queue.list_messages(
                session, destination=args.destination, status=args.status, limit=args.limit
            )
        ]
    store.close()
    _print_outbound(rows, args.json)
    return 0


def _cmd_outbound_resend(settings: Settings, args: argparse.Namespace) -> int:
    store = make_store(settings)
    with store.session() as session:
        rows = [
            _outbound_view(outbound_queue.resend(session, i, now=datetime.now(UTC)))
            for i in args.ids
        ]
    store.close()
    _print_outbound(rows, False)
    return 0


def _cmd_outbound_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    known = {d.name for d in settings.hl7_destinations}
    if args.destination not in known:
        raise ConfigurationError(
            f"unknown HL7 destination {args.destination!r}; configured: {sorted(known)}"
        )
    store = make_store(settings)
    ids = []
    with store.session() as session:
        for path in args.files:
            for message in split_batch(Path(path).read_bytes()).messages:
                ids.append(
                    outbound_queue.enqueue(
                        session,
                        destination=args.destination,
                        message=message,
                        now=datetime.now(UTC),
                    )
                )
    store.close()
    print(f"queued {len(ids)} message(s) for {args.destination}: {ids}")
    return 0


def add_hl7_commands(commands: Any) -> None:
    """Register ``medhub hl7 …`` on the root parser's sub-parsers."""
    hl7 = commands.add_parser("hl7", help="HL7 v2 tools").add_subparsers(
        dest="hl7_command", required=True
    )
    send = hl7.add_parser("send", help="send ER7 files over MLLP and print the ACKs")
    send.add_argument("files", nargs="+", help="files with one or more ER7 messages")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=None, help="default: MEDHUB_MLLP_PORT")
    send.add_argument("--timeout", type=float, default=30.0)
    send.set_defaults(handler=_cmd_hl7_send)
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
    outbound = hl7.add_parser("outbound", help="the outbound queue").add_subparsers(
        dest="outbound_command", required=True
    )
    listing = outbound.add_parser("list", help="queued, sent and parked messages")
    listing.add_argument("--destination")
    listing.add_argument("--status", choices=["pending", "sent", "parked"])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_cmd_outbound_list)
    resend_cmd = outbound.add_parser("resend", help="put parked messages back in their queue")
    resend_cmd.add_argument("ids", nargs="+", type=int)
    resend_cmd.set_defaults(handler=_cmd_outbound_resend)
    enqueue_cmd = outbound.add_parser("enqueue", help="queue ER7 files for a destination")
    enqueue_cmd.add_argument("files", nargs="+")
    enqueue_cmd.add_argument("--destination", required=True)
    enqueue_cmd.set_defaults(handler=_cmd_outbound_enqueue)
