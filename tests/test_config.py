"""Settings: environment, TOML file, flat port aliases, and secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from medhub.config import Settings, redact_url


def test_defaults_are_the_embedded_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("MEDHUB_DATABASE_URL", "MEDHUB_HTTP_PORT", "MEDHUB_MLLP_PORT", "MEDHUB_CONFIG_FILE")
    for key in names:
        monkeypatch.delenv(key, raising=False)
    settings = Settings()
    assert settings.database_url.get_secret_value() == "sqlite:///var/medhub.db"
    assert settings.http.port == 8080
    assert settings.mllp.port == 2575


def test_environment_overrides_with_flat_and_nested_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDHUB_HTTP_PORT", "9090")
    monkeypatch.setenv("MEDHUB_MLLP__MAX_FRAME_BYTES", "1024")
    monkeypatch.setenv("MEDHUB_MLLP_PORT", "12575")
    settings = Settings()
    assert settings.http.port == 9090
    assert settings.mllp.port == 12575
    assert settings.mllp.max_frame_bytes == 1024


def test_toml_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "medhub.toml"
    config.write_text('log_level = "DEBUG"\n[mllp]\nport = 3000\nidle_timeout_seconds = 5\n')
    monkeypatch.setenv("MEDHUB_CONFIG_FILE", str(config))
    monkeypatch.setenv("MEDHUB_LOG_LEVEL", "WARNING")
    settings = Settings()
    assert settings.mllp.port == 3000
    assert settings.mllp.idle_timeout_seconds == 5
    assert settings.log_level == "WARNING"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDHUB_MLLP__PORT", "99999")
    with pytest.raises(ValueError, match="port"):
        Settings()


def test_secrets_never_appear_in_repr_or_the_redacted_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDHUB_DATABASE_URL", "postgresql+psycopg://medhub:s3cr3t@db/medhub")
    settings = Settings()
    shown = repr(settings) + str(settings.redacted())
    assert "s3cr3t" not in shown
    assert settings.redacted()["database_url"] == "postgresql+psycopg://medhub:***@db/medhub"


def test_redact_url() -> None:
    assert redact_url("sqlite:///var/medhub.db") == "sqlite:///var/medhub.db"
    assert redact_url("mysql://root@db/x") == "mysql://root@db/x"
    assert redact_url("not a url") == "**********"
