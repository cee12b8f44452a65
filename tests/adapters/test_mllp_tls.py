"""MLLP over TLS and mutual TLS, with certificates from a throw-away CA (trustme)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme
from sqlalchemy import select

from medhub.adapters.mllp_server import MllpServer, server_ssl_context
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.message_log import Hl7MessageRow
from medhub.hl7.mllp_framing import encode_frame
from tests.adapters.test_mllp_server import Peer, run_with_server
from tests.builders import adt


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, tmp_path: Path, *, mutual: bool) -> ssl.SSLContext:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "s.pem", tmp_path / "s.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ssl_context(str(cert_file), str(key_file), str(ca_file) if mutual else None)


def client_context(ca: trustme.CA, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if with_cert:
        ca.issue_cert("interface-engine.example").configure_cert(context)
    return context


async def tls_peer(server: MllpServer, context: ssl.SSLContext) -> Peer:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="127.0.0.1"
    )
    return Peer(reader, writer)


def test_tls_carries_messages_and_acks(
    ca: trustme.CA, tmp_path: Path, sqlite_store: SqlResourceStore
) -> None:
    async def scenario(server: MllpServer) -> None:
        peer = await tls_peer(server, client_context(ca, with_cert=False))
        await peer.send(encode_frame(adt("TLS-1")))
        assert (await peer.ack())["MSA"][1:3] == ["AA", "TLS-1"]
        await peer.close()

    run_with_server(sqlite_store, scenario, ssl_context=server_context(ca, tmp_path, mutual=False))


def test_a_plain_tcp_client_on_a_tls_port_does_not_stop_the_listener(
    ca: trustme.CA, tmp_path: Path, sqlite_store: SqlResourceStore
) -> None:
    async def scenario(server: MllpServer) -> None:
        plain = await Peer.connect(server)
        await plain.send(encode_frame(adt("PLAIN-1")))
        assert await asyncio.wait_for(plain.reader.read(100), 10) == b""
        await plain.close()
        peer = await tls_peer(server, client_context(ca, with_cert=False))
        await peer.send(encode_frame(adt("TLS-2")))
        assert (await peer.ack())["MSA"][1] == "AA"
        await peer.close()

    run_with_server(sqlite_store, scenario, ssl_context=server_context(ca, tmp_path, mutual=False))


def test_mutual_tls_accepts_a_client_certificate_and_refuses_none(
    ca: trustme.CA, tmp_path: Path, sqlite_store: SqlResourceStore
) -> None:
    async def scenario(server: MllpServer) -> None:
        anonymous = await tls_peer(server, client_context(ca, with_cert=False))
        await anonymous.send(encode_frame(adt("ANON-1")))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            await anonymous.ack()  # the server ends the handshake: no ACK, nothing stored
        anonymous.writer.close()
        peer = await tls_peer(server, client_context(ca, with_cert=True))
        await peer.send(encode_frame(adt("MTLS-1", mrn="MTLS")))
        assert (await peer.ack())["MSA"][1:3] == ["AA", "MTLS-1"]
        await peer.close()

    run_with_server(sqlite_store, scenario, ssl_context=server_context(ca, tmp_path, mutual=True))
    with sqlite_store.session() as session:
        control_ids = list(session.scalars(select(Hl7MessageRow.control_id)))
    assert control_ids == ["MTLS-1"]
