"""medhub settings: one ``Settings`` object, read only by the composition root.

Values come, highest priority first, from ``MEDHUB_*`` environment variables
(nested parts with ``__``, e.g. ``MEDHUB_MLLP__PORT``; the flat aliases the
README lists, such as ``MEDHUB_MLLP_PORT``, also work), then from an optional
TOML file named by ``MEDHUB_CONFIG_FILE``, then the defaults here. Credentials
are ``SecretStr`` so they never appear in ``repr``, logs or ``/health``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_VAR_DIR = Path("var")


def default_database_url(var_dir: Path = DEFAULT_VAR_DIR) -> str:
    """The embedded default: a SQLite file under ``./var/``."""
    return f"sqlite:///{var_dir / 'medhub.db'}"


class HttpSettings(BaseModel):
    """The FastAPI server (FHIR API, JSON API, health, metrics)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(
        default=None, description="ask clients for a certificate signed by this CA (mutual TLS)"
    )


class AuthSettings(BaseModel):
    """Logins, tokens and limits of the HTTP API (the signing secret is ``MEDHUB_JWT_SECRET``)."""

    access_ttl_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    refresh_ttl_seconds: int = Field(default=12 * 3600, ge=300)
    secret_file: Path = Field(
        default=DEFAULT_VAR_DIR / "jwt-secret",
        description="where the embedded default keeps its generated signing secret",
    )
    cors_origins: list[str] = Field(default_factory=list)
    rate_limit_per_minute: int = Field(default=6000, gt=0)
    rate_limit_burst: int = Field(default=1000, gt=0)
    care_unit_cache_seconds: float = Field(default=5.0, ge=0)


class MllpSettings(BaseModel):
    """The HL7 v2 MLLP listener (HL7 v2.5.1 Appendix C, MLLP release 2)."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=2575, ge=0, le=65535)
    max_frame_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    idle_timeout_seconds: float = Field(default=300.0, gt=0)
    max_batch: int = Field(default=200, gt=0)
    commit_workers: int | None = Field(default=None, gt=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    reuse_port: bool = Field(
        default=False,
        description="share the port with other medhub mllp processes on this host (SO_REUSEPORT)",
    )
    validate_mapped: bool = False
    strict_structure: bool = False
    audit_events: bool = Field(
        default=True, description="an AuditEvent per applied message, in its transaction"
    )


class Hl7DestinationSettings(BaseModel):
    """One outbound HL7 partner (EHR, pharmacy, LIS) reached over MLLP."""

    name: str = Field(min_length=1, max_length=64)
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_hostname: str | None = None
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    ack_timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)


class DevicesSettings(BaseModel):
    """Device sample ingest: where samples are stored, spooled, and how clocks are judged."""

    spool_path: Path | None = DEFAULT_VAR_DIR / "sample-spool.db"

    @field_validator("spool_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``MEDHUB_DEVICES__SPOOL_PATH=`` (empty) turns the spool off, as documented;
        pydantic alone would read it as ``Path('.')``, the working directory."""
        return None if value == "" else value

    max_clock_skew_seconds: float = Field(default=5.0, gt=0)
    retention_days: int = Field(default=30, ge=1)
    binding_refresh_seconds: float = Field(default=5.0, gt=0)


class MqttSettings(BaseModel):
    """The MQTT device consumer (on when ``MEDHUB_MQTT_URL`` is set)."""

    client_id: str = Field(
        default="medhub", min_length=1, description="stable, one per process: the session"
    )
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    shared_group: str | None = Field(
        default=None, description="MQTT 5 shared subscription group for several consumers"
    )
    partition: str | None = Field(
        default=None,
        description="k/N: take the devices whose id hashes to k of N, each consumer the whole "
        "stream (one process per device: whole detector state); k may end a pod name "
        "(medhub-devices-1/2); excludes shared_group",
    )
    topic_prefix: str = "devices"
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    keepalive_seconds: int = Field(default=30, gt=0)
    reconnect_min_seconds: int = Field(default=1, gt=0)
    reconnect_max_seconds: int = Field(default=60, gt=0)
    batch_messages: int = Field(default=500, gt=0)
    batch_seconds: float = Field(
        default=0.0,
        ge=0,
        description="how long a batch waits for more messages; 0: none, batches form while "
        "the previous one is being stored",
    )
    queue_messages: int = Field(default=2000, gt=0)
    broker_inflight: int = Field(default=20, gt=0)


class AlertSettings(BaseModel):
    """The alert lifecycle and where alerts (and other outbox events) are published."""

    exchange: str = "medhub.alerts"
    escalate_after_seconds: float = Field(default=120.0, gt=0)
    check_seconds: float = Field(default=5.0, gt=0, description="signal-lost and escalation checks")
    keep_sent_days: int = Field(default=7, ge=1)
    pcd04_destination: str | None = Field(
        default=None,
        description="the name of the HL7 destination (an Alert Manager) every alert change is "
        "also reported to as IHE PCD-04 ORU^R40; unset: none",
    )
    ack_silence_seconds: float = Field(
        default=120.0,
        ge=0,
        description="an acknowledged alarm that ends and comes back within this time keeps its "
        "acknowledged alert open instead of paging again; 0: off",
    )
    device_alarms: bool = Field(
        default=True, description="alarms devices send on devices/+/alerts become alerts"
    )


class News2Settings(BaseModel):
    """NEWS2 per patient from the latest vitals, and NEWS2 alerts (docs/alarms.md)."""

    max_age_seconds: float = Field(
        default=3600.0, gt=0, description="a value older than this is stale: listed, not scored"
    )
    every_seconds: float = Field(
        default=60.0, gt=0, description="a patient with new vitals is re-scored at most this often"
    )
    alerts: bool = Field(default=True, description="raise NEWS2 alerts by band")


class PrescribingSettings(BaseModel):
    """Medication-safety checks on MedicationRequest writes and the order sent to the pharmacy."""

    checks: bool = Field(
        default=True, description="check MedicationRequest writes (off only for bulk migrations)"
    )
    interactions_csv: Path | None = Field(
        default=None, description="a site's licensed interaction list, added to the shipped one"
    )
    pharmacy_destination: str | None = Field(
        default=None, description="the name of the HL7 destination saved orders are sent to"
    )
    pharmacy_message_type: Literal["RDE^O11", "ORM^O01"] = "RDE^O11"
    sending_application: str = "MEDHUB"
    sending_facility: str = "MEDHUB"
    receiving_application: str = "PHARMACY"
    receiving_facility: str = ""


class ModbusDeviceSettings(BaseModel):
    """One Modbus device polled by medhub."""

    id: str = Field(min_length=1, max_length=64)
    url: str = Field(description="modbus+tcp://host:502?unit=1 or modbus+rtu:///dev/ttyUSB0?unit=3")
    map: str = Field(description="a shipped register map name or a path to a .toml map")
    interval_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float = Field(default=1.0, gt=0)


class SerialPortSettings(BaseModel):
    """One line-oriented serial device (a pyserial URL: /dev/ttyUSB0, socket://, rfc2217://)."""

    device_id: str = Field(min_length=1, max_length=64)
    url: str
    parser: str = "masimo-ascii1"
    baudrate: int = Field(default=9600, gt=0)
    timezone: str = Field(default="UTC", description="the zone of the device's clock")


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (:mod:`medhub.tracing`); off while ``otlp_endpoint`` is unset."""

    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces"
    )
    service_name: str = "medhub"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class Settings(BaseSettings):
    """Everything that can be configured; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="MEDHUB_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: SecretStr = Field(
        default_factory=lambda: SecretStr(default_database_url()),
        description="SQLAlchemy URL of the resource store (may hold a password).",
    )
    database_echo: bool = False
    auto_migrate: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    http: HttpSettings = Field(default_factory=HttpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MEDHUB_JWT_SECRET", "jwt_secret"),
        description="HS256 key of the access tokens; required with a server database",
    )
    jwt_accepted_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("MEDHUB_JWT_ACCEPTED_SECRETS", "jwt_accepted_secrets"),
        description="comma-separated keys whose tokens are still accepted but which no longer "
        "sign: the overlap while rotating MEDHUB_JWT_SECRET (docs/runbook.md)",
    )

    @field_validator("jwt_accepted_secrets", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``a,b`` from the environment (keys hold no commas: hex or URL-safe base64)."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    mllp: MllpSettings = Field(default_factory=MllpSettings)
    hl7_destinations: list[Hl7DestinationSettings] = Field(default_factory=list)
    timeseries_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the sample store (SQLite or PostgreSQL); default: "
        "var/samples.db beside a SQLite resource store, else the resource database.",
    )
    devices: DevicesSettings = Field(default_factory=DevicesSettings)
    mqtt_url: SecretStr | None = Field(
        default=None, description="mqtt[s]://[user[:password]@]host[:port] of the device broker"
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    amqp_url: SecretStr | None = Field(
        default=None,
        description="amqp://user:password@host:port/vhost of RabbitMQ; unset: in-process bus",
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    news2: News2Settings = Field(default_factory=News2Settings)
    prescribing: PrescribingSettings = Field(default_factory=PrescribingSettings)
    modbus_devices: list[ModbusDeviceSettings] = Field(default_factory=list)
    serial_ports: list[SerialPortSettings] = Field(default_factory=list)
    http_port: int | None = Field(
        default=None, validation_alias=AliasChoices("MEDHUB_HTTP_PORT", "http_port")
    )
    mllp_port: int | None = Field(
        default=None, validation_alias=AliasChoices("MEDHUB_MLLP_PORT", "mllp_port")
    )

    def model_post_init(self, __context: Any) -> None:
        """Fold the flat ``MEDHUB_HTTP_PORT`` / ``MEDHUB_MLLP_PORT`` into the nested parts."""
        if self.http_port is not None:
            self.http = self.http.model_copy(update={"port": self.http_port})
        if self.mllp_port is not None:
            self.mllp = self.mllp.model_copy(update={"port": self.mllp_port})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over TOML file over defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("MEDHUB_CONFIG_FILE")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        sources.append(file_secret_settings)
        return tuple(sources)

    def sample_store_url(self) -> str:
        """The sample store's URL: set, or derived from the resource store's."""
        if self.timeseries_url is not None:
            return self.timeseries_url.get_secret_value()
        database = self.database_url.get_secret_value()
        if database.startswith("postgresql"):
            return database
        folder = DEFAULT_VAR_DIR
        prefix = "sqlite:///"
        if database.startswith(prefix) and database[len(prefix) :] not in ("", ":memory:"):
            # Beside the resource file, in its own: sample ingest never waits on the
            # resource writer's lock.
            folder = Path(database[len(prefix) :]).parent
        return f"sqlite:///{folder / 'samples.db'}"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log: secrets and URL passwords masked."""
        data = self.model_dump(
            mode="json", exclude={"http_port", "mllp_port", "jwt_secret", "jwt_accepted_secrets"}
        )
        for key, value in list(data.items()):
            secret = getattr(self, key, None)
            if isinstance(secret, SecretStr):
                data[key] = redact_url(secret.get_secret_value())
            elif value is None:
                data[key] = None
        return data


def redact_url(url: str) -> str:
    """Mask the password of a URL (``scheme://user:***@host``); other text is masked whole."""
    if "://" not in url:
        return "**********"
    scheme, rest = url.split("://", 1)
    if "@" not in rest:
        return url
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
