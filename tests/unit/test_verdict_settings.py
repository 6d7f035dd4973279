"""The verdict consumer's settings (`verdicts:`, `kafka.verdicts_topic`): file, environment,
and mistakes refused with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderator.config import Settings, load_settings
from moderator.errors import ConfigError
from moderator.verdicts.consumer import build_consumer, verdict_categories


def test_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "kafka:\n  verdicts_topic: reviewed\n"
        "verdicts:\n  group_id: g\n  training_rows_path: /rows/v.jsonl\n"
    )
    monkeypatch.setenv("MODERATOR_VERDICTS__DLQ_TOPIC", "reviewed.dlq")
    settings = load_settings(path)
    assert settings.kafka.verdicts_topic == "reviewed"
    assert (settings.verdicts.group_id, settings.verdicts.dlq_topic) == ("g", "reviewed.dlq")
    assert settings.verdicts.training_rows_path == Path("/rows/v.jsonl")


@pytest.mark.parametrize(
    "text, where",
    [
        ("verdicts:\n  seen_ttl_s: 5\n", r"settings.yaml:2: verdicts.seen_ttl_s"),
        ("verdicts:\n  group_id: ''\n", r"settings.yaml:2: verdicts.group_id"),
        ("verdicts:\n  grup_id: x\n", r"settings.yaml:2: verdicts.grup_id"),
    ],
)
def test_mistakes_name_line_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=where):
        load_settings(path)


def test_redis_is_required_before_anything_connects() -> None:
    settings = Settings.model_validate({"kafka": {"bootstrap_servers": "b:9092"}})
    with pytest.raises(ConfigError, match=r"redis\.url is not set"):
        build_consumer(settings)
    bad_url = Settings.model_validate(
        {"kafka": {"bootstrap_servers": "b:9092"}, "redis": {"url": "http://cache:6379"}}
    )
    with pytest.raises(ConfigError, match=r"redis\.url: Redis URL must specify"):
        build_consumer(bad_url)


def test_metric_categories_come_from_the_setting_or_the_policy() -> None:
    assert verdict_categories(Settings.model_validate({"verdicts": {"categories": ["x"]}})) == ["x"]
    assert "hate" in verdict_categories(Settings())
