"""How medhub connects to an MQTT broker: options, URL parsing and a configured paho client.

Shared by the consumer (:mod:`medhub.adapters.mqtt_ingest`) and the simulator
(:mod:`medhub.adapters.mqtt_simulator`), so both speak to a broker the same way:

* ``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS); user and password may be
  in the URL (``mqtt://user:secret@host``) or given as options. The URL is
  redacted before it is logged.
* Protocol MQTT 3.1.1 or MQTT 5 (the default: only v5 lets the client set
  Receive Maximum, MQTT 5.0 §3.1.2.11.3, which is how the consumer bounds the
  unacknowledged messages it holds; a 3.1.1 client gets the broker's
  ``max_inflight_messages``, 20 by default on Mosquitto).
* A persistent session: MQTT 3.1.1 ``CleanSession=0`` (§3.1.2.4); MQTT 5
  ``Clean Start=0`` on every connect and a ``Session Expiry Interval``
  (§3.1.2.11.2). With a stable client id the broker keeps the subscription and
  queues QoS 1 messages while medhub is away, and delivers them on its return.
* Reconnects back off from ``reconnect_min_seconds`` doubling to
  ``reconnect_max_seconds`` (paho's ``reconnect_delay_set``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from medhub.errors import ConfigurationError

Protocol = Literal["3.1.1", "5"]
_SCHEMES: Final = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
#: The longest Session Expiry Interval MQTT 5 can say short of "never" (0xFFFFFFFF).
_MAX_EXPIRY: Final = 0xFFFFFFFE


@dataclass(frozen=True, slots=True)
class MqttTls:
    """TLS to the broker: the CA that signed it, and optionally a client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Only for test brokers with self-signed certificates: skips the host name check.
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """A client context with the platform's (or the given CA's) trust and TLS >= 1.2."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file is not None else None
            )
        if self.insecure:
            context.check_hostname = False
        context.sslsocket_class = _ClosingSSLSocket
        return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails.

    paho (2.2) leaves the socket open when ``do_handshake`` raises (an untrusted
    or expired broker certificate), and its reconnect loop then leaks one file
    descriptor per attempt until the garbage collector finds them.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


@dataclass(frozen=True, slots=True)
class MqttConnection:
    """Where and how to connect; everything a paho client needs, nothing it does."""

    host: str
    port: int = 1883
    client_id: str = "medhub"
    protocol: Protocol = "5"
    username: str | None = None
    password: str | None = None
    tls: MqttTls | None = None
    keepalive_seconds: int = 30
    #: Keep the session (subscriptions and queued QoS 1 messages) across disconnects.
    persistent: bool = True
    #: MQTT 5 only: how long the broker keeps the session after a disconnect.
    session_expiry_seconds: int = 7 * 24 * 3600
    reconnect_min_seconds: int = 1
    reconnect_max_seconds: int = 60

    def __repr__(self) -> str:  # the password must never reach a log line
        password = "***" if self.password else None
        return (
            f"MqttConnection(host={self.host!r}, port={self.port}, client_id={self.client_id!r}, "
            f"protocol={self.protocol!r}, username={self.username!r}, password={password!r}, "
            f"tls={self.tls is not None})"
        )

    def with_client_id(self, client_id: str) -> MqttConnection:
        return replace(self, client_id=client_id)


def parse_mqtt_url(url: str, **options: Any) -> MqttConnection:
    """``mqtt[s]://[user[:password]@]host[:port]`` plus :class:`MqttConnection` options.

    ``mqtts`` turns TLS on with the platform's trust store unless ``tls`` is
    given; an explicit ``username``/``password`` option wins over the URL's.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(f"MQTT URL {redact(url)!r}: scheme must be mqtt or mqtts")
    if not parts.hostname:
        raise ConfigurationError(f"MQTT URL {redact(url)!r}: a host is required")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigurationError(f"MQTT URL {redact(url)!r}: no path or query is allowed")
    secure = _SCHEMES[parts.scheme]
    try:
        port = parts.port or (8883 if secure else 1883)
    except ValueError as exc:
        raise ConfigurationError(f"MQTT URL {redact(url)!r}: {exc}") from exc
    values: dict[str, Any] = {"host": parts.hostname, "port": port}
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password:
        values["password"] = unquote(parts.password)
    if secure:
        values["tls"] = MqttTls()
    values.update({key: value for key, value in options.items() if value is not None})
    if values.get("protocol", "5") not in ("3.1.1", "5"):
        raise ConfigurationError(f"MQTT protocol must be 3.1.1 or 5, not {values['protocol']!r}")
    return MqttConnection(**values)


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def make_client(connection: MqttConnection, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho 2.x client configured for ``connection`` (not connected yet)."""
    v5 = connection.protocol == "5"
    kwargs: dict[str, Any] = {} if v5 else {"clean_session": not connection.persistent}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=connection.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        manual_ack=manual_ack,
        **kwargs,
    )
    if connection.username is not None:
        client.username_pw_set(connection.username, connection.password)
    if connection.tls is not None:
        client.tls_set_context(connection.tls.context())
    client.reconnect_delay_set(connection.reconnect_min_seconds, connection.reconnect_max_seconds)
    return client


def connect_properties(
    connection: MqttConnection, *, receive_maximum: int | None = None
) -> Properties | None:
    """MQTT 5 CONNECT properties: session expiry and Receive Maximum; None for 3.1.1."""
    if connection.protocol != "5":
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if connection.persistent:
        properties.SessionExpiryInterval = min(connection.session_expiry_seconds, _MAX_EXPIRY)
    if receive_maximum is not None:
        properties.ReceiveMaximum = max(1, min(receive_maximum, 65535))
    return properties


def connect_async(
    client: mqtt.Client, connection: MqttConnection, *, receive_maximum: int | None = None
) -> None:
    """Start connecting in the background; paho's loop thread retries with back-off.

    ``Clean Start`` is 0 on every connect of a persistent MQTT 5 session (paho's
    default, "clean on the first connect only", would throw away what the
    broker queued while this process was down).
    """
    kwargs: dict[str, Any] = {}
    if connection.protocol == "5":
        kwargs["clean_start"] = not connection.persistent
        kwargs["properties"] = connect_properties(connection, receive_maximum=receive_maximum)
    client.connect_async(connection.host, connection.port, connection.keepalive_seconds, **kwargs)
