"""Settings: file + environment precedence, located errors, Kafka security options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from moderator.config import (
    AuthorStateConfig,
    KafkaSettings,
    Settings,
    load_settings,
    settings_file_data,
)
from moderator.errors import ConfigError
from moderator.io import connection_options
from moderator.schema import Action


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("kafka:\n  bootstrap_servers: file:9092\nworker:\n  batch_size: 8\n")
    monkeypatch.setenv("MODERATOR_WORKER__BATCH_SIZE", "16")
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "file:9092"
    assert settings.worker.batch_size == 16


def test_file_errors_name_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("kafka:\n  bootstrap_servers: x:1\n  max_poll_records: 0\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:3: kafka.max_poll_records"):
        load_settings(path)
    path.write_text("kafak:\n  bootstrap_servers: x:1\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:1: kafak"):
        load_settings(path)


def test_sasl_requires_credentials_and_passes_them() -> None:
    kafka = KafkaSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        connection_options(kafka)
    kafka = KafkaSettings(
        bootstrap_servers="b:9093,c:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",  # type: ignore[arg-type]
        ssl_cafile=Path("/etc/ca.pem"),
    )
    options = connection_options(kafka)
    assert options["bootstrap_servers"] == ["b:9093", "c:9093"]
    assert options["sasl_plain_password"] == "p"
    assert options["ssl_cafile"] == "/etc/ca.pem"


def test_missing_bootstrap_servers_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="MODERATOR_KAFKA__BOOTSTRAP_SERVERS"):
        connection_options(KafkaSettings())


def test_settings_are_values(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("worker:\n  batch_size: 8\n")
    settings = load_settings(path)
    with pytest.raises(ValidationError, match="frozen"):
        settings.worker.batch_size = 16  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.policy_reload_interval_s = 0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.signals.ocr.max_boxes = 5  # type: ignore[misc]
    changed = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": 16})}
    )
    assert (changed.worker.batch_size, settings.worker.batch_size) == (16, 8)


def test_author_state_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().authors == AuthorStateConfig()  # today's defaults
    assert AuthorStateConfig().strike_actions == {Action.BLOCK}
    assert AuthorStateConfig().strike_ttl_s == 30 * 24 * 3600
    path = tmp_path / "settings.yaml"
    path.write_text(
        "authors:\n  key_prefix: 'mod:a:'\n  strike_actions: [block, review]\n"
        "  strike_ttl_s: 86400\n  flush_every: 8\n"
    )
    monkeypatch.setenv("MODERATOR_AUTHORS__RETRY_AFTER_S", "30")
    monkeypatch.setenv("MODERATOR_AUTHORS__FLUSH_EVERY", "16")
    authors = load_settings(path).authors
    assert authors == AuthorStateConfig(
        key_prefix="mod:a:",
        strike_actions=frozenset({Action.BLOCK, Action.REVIEW}),
        strike_ttl_s=86400,
        flush_every=16,
        retry_after_s=30,
    )
    monkeypatch.setenv("MODERATOR_AUTHORS__STRIKE_ACTIONS", '["review"]')
    assert load_settings(path).authors.strike_actions == {Action.REVIEW}
    monkeypatch.delenv("MODERATOR_AUTHORS__STRIKE_ACTIONS")
    path.write_text("authors:\n  strike_actions: [ban]\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:2: authors.strike_actions"):
        load_settings(path)


def test_settings_file_lists_strike_actions_in_order() -> None:
    settings = Settings(
        authors=AuthorStateConfig(strike_actions=frozenset({Action.REVIEW, Action.BLOCK}))
    )
    assert settings_file_data(settings)["authors"]["strike_actions"] == ["block", "review"]  # type: ignore[index]
