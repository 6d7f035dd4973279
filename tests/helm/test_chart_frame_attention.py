"""The chart accepts `limits.media.pooling: attention` (#14); it reaches the worker settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.chart_render import CHART, one, render

pytestmark = pytest.mark.integration

MINIMAL = CHART / "ci" / "minimal-values.yaml"


def test_attention_pooling_reaches_the_worker_settings(tmp_path: Path) -> None:
    from moderator.config import load_settings

    values = tmp_path / "values.yaml"
    values.write_text("limits:\n  media:\n    pooling: attention\n")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        one(render([MINIMAL, values]), "ConfigMap", "-settings")["data"]["settings.yaml"]
    )
    assert load_settings(settings_file).limits.media.pooling == "attention"
