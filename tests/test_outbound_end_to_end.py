"""Outbound HL7 through ``medhub serve``: queued by the operator, delivered to a partner.

The partner is a real MLLP listener on loopback that ACKs what it receives; the
destination is configured the way an operator would, through the environment.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from medhub.cli import main
from medhub.config import Settings
from medhub.hl7.er7 import parse_er7
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame
from medhub.wiring import build
from tests.builders import adt
from tests.test_serve_end_to_end import Server

pytestmark = pytest.mark.slow


class Partner:
    """An MLLP partner that ACKs AA (echoing MSH-10) and remembers what it got."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.received: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                decoder = MllpDecoder()
                while data := conn.recv(65536):
                    for frame in decoder.feed(data):
                        if not isinstance(frame, bytes):
                            continue
                        control_id = parse_er7(frame.decode()).control_id
                        self.received.append(control_id)
                        header = f"MSH|^~\\&|P|P|M|M|20240101||ACK|A{control_id}|P|2.5.1"
                        ack = f"{header}\rMSA|AA|{control_id}\r"
                        conn.sendall(encode_frame(ack.encode()))

    def close(self) -> None:
        self.sock.close()


def test_destinations_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MEDHUB_HL7_DESTINATIONS",
        json.dumps([{"name": "pharmacy", "host": "127.0.0.1", "port": 2576, "max_attempts": 3}]),
    )
    monkeypatch.setenv("MEDHUB_DATABASE_URL", "sqlite:///:memory:")
    components = build(Settings())
    [sender] = components.senders
    assert (sender.destination.name, sender.destination.max_attempts) == ("pharmacy", 3)
    components.store.close()


def test_a_queued_message_reaches_the_partner_and_is_listed_as_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    partner = Partner()
    destinations = json.dumps(
        [{"name": "ehr", "host": "127.0.0.1", "port": partner.port, "ack_timeout_seconds": 5}]
    )
    monkeypatch.setenv("MEDHUB_HL7_DESTINATIONS", destinations)
    monkeypatch.setenv("MEDHUB_DATABASE_URL", f"sqlite:///{tmp_path / 'medhub.db'}")
    server = Server(tmp_path)
    server.start()
    try:
        message = tmp_path / "out.hl7"
        message.write_bytes(adt("OUT-1") + adt("OUT-2", mrn="MRN-2"))
        assert main(["hl7", "outbound", "enqueue", str(message), "--destination", "ehr"]) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(partner.received) < 2:
            time.sleep(0.1)
        assert partner.received == ["OUT-1", "OUT-2"]  # in order
        capsys.readouterr()
        for _ in range(50):
            assert main(["hl7", "outbound", "list", "--json"]) == 0
            rows = json.loads(capsys.readouterr().out)
            if all(r["status"] == "sent" for r in rows):
                break
            time.sleep(0.1)
        assert [(r["control_id"], r["status"]) for r in rows] == [
            ("OUT-1", "sent"),
            ("OUT-2", "sent"),
        ]
        assert main(["hl7", "outbound", "enqueue", str(message), "--destination", "nope"]) == 2
    finally:
        server.stop()
        partner.close()
