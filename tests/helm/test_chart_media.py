"""The chart's multi-frame media values (limits.media) reach the worker's settings; mistakes
are refused by the values schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.chart_render import CHART, one, render, template

pytestmark = pytest.mark.integration

MINIMAL = CHART / "ci" / "minimal-values.yaml"


def test_media_values_reach_the_worker_settings(tmp_path: Path) -> None:
    from moderator.config import load_settings
    from moderator.media_settings import MediaLimits, VideoLimits

    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        one(render([MINIMAL]), "ConfigMap", "-settings")["data"]["settings.yaml"]
    )
    # The chart's defaults are the settings' own.
    assert load_settings(settings_file).limits.media == MediaLimits()

    values = tmp_path / "media-values.yaml"
    values.write_text(
        "limits:\n  media:\n    sampleFrames: false\n    framesPerItem: 4\n"
        "    maxFramesPerPost: 8\n    maxAlbumImages: 3\n    pooling: mean\n"
        "    video:\n      enabled: false\n      allowedContainers: [mp4]\n"
        "      maxDurationSeconds: 30\n"
    )
    settings_file.write_text(
        one(render([MINIMAL, values]), "ConfigMap", "-settings")["data"]["settings.yaml"]
    )
    media = load_settings(settings_file).limits.media
    assert media == MediaLimits(
        sample_frames=False,
        frames_per_item=4,
        max_frames_per_post=8,
        max_album_images=3,
        pooling="mean",
        video=VideoLimits(enabled=False, allowed_containers=["mp4"], max_duration_s=30),
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["limits.media.pooling=median"], "/limits/media/pooling"),
        (["limits.media.framesPerItem=0"], "/limits/media/framesPerItem"),
        (["limits.media.video.allowedContainers={avi}"], "/limits/media/video/allowedContainers"),
        (["limits.media.frames=3"], "additional properties 'frames'"),
    ],
)
def test_schema_rejects_media_mistakes(sets: list[str], message: str) -> None:
    result = template([MINIMAL], sets)
    assert result.returncode != 0, f"accepted {sets}"
    assert message in result.output, result.output
