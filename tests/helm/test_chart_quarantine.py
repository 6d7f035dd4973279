"""The chart's flood-quarantine values reach the worker's settings; mistakes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.chart_render import CHART, one, render, template

pytestmark = pytest.mark.integration

MINIMAL = CHART / "ci" / "minimal-values.yaml"


def test_quarantine_values_reach_the_worker_settings(tmp_path: Path) -> None:
    from moderator.config import load_settings
    from moderator.quarantine_settings import QuarantineSettings

    default = render([MINIMAL])
    settings_file = tmp_path / "default.yaml"
    settings_file.write_text(one(default, "ConfigMap", "-settings")["data"]["settings.yaml"])
    # The chart's defaults are the settings' own.
    assert load_settings(settings_file).quarantine == QuarantineSettings()

    values = tmp_path / "quarantine-values.yaml"
    values.write_text(
        "quarantine:\n  enabled: true\n  bucketSeconds: 30\n  currentWindowSeconds: 120\n"
        "  baselineWindowSeconds: 1800\n  factor: 8.5\n  minVolume: 50\n  coolOffSeconds: 900\n"
        "  checkIntervalSeconds: 2\n  exemptRules: [bank.known_bad_pdq, hate.block]\n"
        "  keyPrefix: 'mod:q:'\n  retryAfterSeconds: 1.5\n"
    )
    manifests = render([MINIMAL, values])
    settings_file.write_text(one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"])
    quarantine = load_settings(settings_file).quarantine
    assert quarantine == QuarantineSettings(
        enabled=True,
        bucket_s=30,
        current_window_s=120,
        baseline_window_s=1800,
        factor=8.5,
        min_volume=50,
        cool_off_s=900,
        check_interval_s=2,
        exempt_rules=["bank.known_bad_pdq", "hate.block"],
        key_prefix="mod:q:",
        retry_after_s=1.5,
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["quarantine.factor=1"], "/quarantine/factor"),
        (["quarantine.minVolume=0"], "/quarantine/minVolume"),
        (["quarantine.exemptRules={not a rule}"], "/quarantine/exemptRules"),
        (["quarantine.windowSeconds=60"], "additional properties 'windowSeconds'"),
    ],
)
def test_schema_rejects_quarantine_mistakes(sets: list[str], message: str) -> None:
    result = template([MINIMAL], sets)
    assert result.returncode != 0, f"accepted {sets}"
    assert message in result.output, result.output
