"""Video posts (#14): PyAV decoding under header caps, frames sampled uniformly and on scene
changes, and a known-bad frame in a video caught by a PDQ bank only with sampling on."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest import decode_post
from moderator.ingest.frames import FrameSampler
from moderator.ingest.video import sample_video, sniff_container
from moderator.media_settings import MediaLimits, VideoLimits
from moderator.schema import Action
from tests import hostile_media as media
from tests.unit.test_animated_frames import banked_policy, decide, later_bad_frames, record


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(("container", "codec"), [("mp4", "h264"), ("webm", "vp9")])
def test_known_bad_frame_in_a_video_is_blocked_only_with_sampling(
    container: str, codec: str, tmp_path: Path
) -> None:
    service = banked_policy(tmp_path)
    video = media.video_of(later_bad_frames(30, 5), container, codec)
    sampled = decode_post(record(video_b64=b64(video)), DecodeLimits(), 224, pdq=True)
    positions = [frame.position for frame in sampled.frames]
    assert sampled.problems == {}
    assert positions[0] == 0 and 5 in positions and len(positions) <= 8
    assert {frame.source for frame in sampled.frames} == {"video"}
    assert decide(service, sampled) is Action.BLOCK

    first_only = DecodeLimits(media=MediaLimits(sample_frames=False))
    old = decode_post(record(video_b64=b64(video)), first_only, 224, pdq=True)
    assert old.frames == () and old.pixels is not None  # one frame: the still image path
    assert decide(service, old) is Action.ALLOW


def test_frames_decoded_are_bounded_by_the_header_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream holding more frames than duration x rate: decoding stops at the bound."""
    offered: list[int] = []
    real = FrameSampler.offer

    def counting(self: FrameSampler, index: int, *args: object) -> None:
        offered.append(index)
        real(self, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(FrameSampler, "offer", counting)
    limits = MediaLimits(video=VideoLimits(max_duration_s=1.0, max_fps=10.0))
    data = media.video("matroska", frames=40, rate=10)  # 4 s: refused from the header
    with pytest.raises(InvalidPostError) as refused:
        sample_video(data, limits, 64, 8, time.monotonic() + 60)
    assert refused.value.reason is ReasonCode.VIDEO_TOO_LONG
    assert offered == []  # refused before any frame was decoded

    sampled = sample_video(media.video(frames=40, rate=10), MediaLimits(), 64, 8, 1e18)
    assert len(offered) == sampled.frame_count == 40
    assert len(sampled.frames) <= 8


def test_allowlists_and_sniffing() -> None:
    mp4, webm = media.video(), media.video("webm", "vp9")
    assert (sniff_container(mp4), sniff_container(webm)) == ("mp4", "webm")
    assert sniff_container(media.png()) is None
    only_mp4 = MediaLimits(video=VideoLimits(allowed_containers=["mp4"]))
    with pytest.raises(InvalidPostError) as caught:
        sample_video(webm, only_mp4, 64, 8, 1e18)
    assert caught.value.reason is ReasonCode.VIDEO_CONTAINER_UNSUPPORTED
    no_h264 = MediaLimits(video=VideoLimits(allowed_codecs=["vp9"]))
    with pytest.raises(InvalidPostError) as caught:
        sample_video(mp4, no_h264, 64, 8, 1e18)
    assert caught.value.reason is ReasonCode.VIDEO_CODEC_UNSUPPORTED


def test_video_switched_off_is_a_problem_and_the_caption_is_still_decided() -> None:
    limits = DecodeLimits(media=MediaLimits(video=VideoLimits(enabled=False)))
    decoded = decode_post(record(video_b64=b64(media.video()), caption="hi"), limits, 224)
    assert set(decoded.problems) == {ReasonCode.VIDEO_DISABLED}
    assert decoded.pixels is None and decoded.frames == ()


def test_a_video_problem_can_be_dead_lettered_again() -> None:
    limits = DecodeLimits(dead_letter_problems=[ReasonCode.VIDEO_CODEC_UNSUPPORTED])
    mjpeg = media.video("matroska", "mjpeg", pix_fmt="yuvj420p")
    with pytest.raises(InvalidPostError) as caught:
        decode_post(record(video_b64=b64(mjpeg)), limits, 224)
    assert caught.value.reason is ReasonCode.VIDEO_CODEC_UNSUPPORTED


def test_frames_are_model_pixels_with_pixel_digests() -> None:
    decoded = decode_post(record(video_b64=b64(media.video(frames=20))), DecodeLimits(), 224)
    assert len(decoded.frames) > 1
    for frame in decoded.frames:
        assert frame.pixels.shape == (224, 224, 3) and frame.pixels.dtype == np.uint8
    assert len({frame.digest for frame in decoded.frames}) == len(decoded.frames)
    assert decoded.image_sha256 == decoded.frames[0].digest


def test_a_spent_decode_budget_keeps_the_frames_read() -> None:
    """A budget of a microsecond is spent by the first frame: that frame is used, the post is
    decided with media_decode_budget listed (no timing is asserted, only the outcome)."""
    limits = DecodeLimits(media=MediaLimits(decode_budget_ms=0.001))
    decoded = decode_post(record(video_b64=b64(media.video(frames=30))), limits, 224)
    assert set(decoded.problems) == {ReasonCode.MEDIA_DECODE_BUDGET}
    assert "after 1 of 30 frames" in decoded.problems[ReasonCode.MEDIA_DECODE_BUDGET]
    assert decoded.pixels is not None


def test_long_videos_decode_keyframes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over `decode_every_frame_up_to` frames, only keyframes are decoded (counted, not
    timed), and the picks still span the whole video."""
    offered: list[int] = []
    real = FrameSampler.offer

    def counting(self: FrameSampler, index: int, *args: object) -> None:
        offered.append(index)
        real(self, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(FrameSampler, "offer", counting)
    data = media.video(frames=600, size=(64, 64), rate=30)
    every = sample_video(data, MediaLimits(), 64, 8, 1e18)
    assert len(offered) == every.frame_count == 600
    offered.clear()
    limits = MediaLimits(video=VideoLimits(decode_every_frame_up_to=100))
    keyframes = sample_video(data, limits, 64, 8, 1e18)
    assert 1 < len(offered) < 100 and offered == sorted(offered)
    positions = [position for position, _ in keyframes.frames]
    assert positions[0] == 0 and positions[-1] == offered[-1] > 400
