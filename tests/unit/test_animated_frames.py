"""Animated GIF/WebP posts (#14): later frames are sampled, scored and hashed under caps.

The known-bad image (`known_bad`: flat colour blocks, so a GIF's 256-colour palette keeps it
exactly) has its PDQ hash in a bank the test policy blocks on: hidden as frame 5 of an
animation, it is caught with frame sampling on and missed with
`limits.media.sample_frames: false` (the first frame only, as before #14).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from moderator.config import DecodeLimits
from moderator.errors import ReasonCode
from moderator.ingest import DecodedPost, decode_post
from moderator.ingest.frames import FrameSampler
from moderator.media_settings import MediaLimits
from moderator.policy import PolicyService, load_policy
from moderator.schema import Action
from moderator.signals.hashes import PdqSignal
from tests import hostile_media as media

SIDE = 256


def harmless(index: int) -> np.ndarray:
    return np.full((SIDE, SIDE, 3), (40 + index * 10, 90, 140), np.uint8)


def known_bad() -> np.ndarray:
    """16 x 16 blocks of 8 colours, 256 x 256: survives GIF palettes and video codecs."""
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    blocks = palette[rng.integers(0, 8, (16, 16))]
    return np.repeat(np.repeat(blocks, SIDE // 16, axis=0), SIDE // 16, axis=1)


def later_bad_frames(count: int = 10, bad: int = 5) -> list[np.ndarray]:
    frames = [harmless(i) for i in range(count)]
    frames[bad] = known_bad()
    return frames


def banked_policy(tmp_path: Path, image_size: int = 224) -> PolicyService:
    """A policy that blocks a post matching the PDQ bank of known_bad(), hashed as the
    worker hashes a still image (its model pixels, `image_size` square)."""
    out = io.BytesIO()
    Image.fromarray(known_bad()).save(out, format="PNG")
    data = base64.b64encode(out.getvalue()).decode()
    still = decode_post(record(image_b64=data), LIMITS, image_size)
    assert still.pixels is not None
    (tmp_path / "bad.pdq.txt").write_text(f"{PdqSignal.run_on_pixels(still.pixels)['hash']}\n")
    (tmp_path / "p.yaml").write_text(
        "name: p\nversion: '1'\ncategories: [hate]\n"
        "hash_banks: {bad: {kind: pdq, file: bad.pdq.txt}}\n"
        "rules:\n- {id: bad, when: 'bank_match(\"bad\")', action: block}\n"
    )
    return PolicyService(load_policy(tmp_path / "p.yaml"))


def record(**fields: object) -> bytes:
    post = {"post_id": "p", "author_id": "a", "created_at": "2026-06-01T00:00:00Z"}
    return orjson.dumps({**post, **fields})


LIMITS = DecodeLimits()


def decide(service: PolicyService, decoded: DecodedPost) -> Action:
    return service.decide_post(decoded, {}, 1_780_000_000_000).action


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_known_bad_later_frame_is_blocked_with_sampling_and_missed_without(
    fmt: str, tmp_path: Path
) -> None:
    service = banked_policy(tmp_path)
    data = base64.b64encode(media.animation(later_bad_frames(), fmt)).decode()
    sampled = decode_post(record(image_b64=data), DecodeLimits(), 224, pdq=True)
    assert (sampled.frames[0].source, sampled.frames[0].position) == ("image", 0)
    assert 5 in [f.position for f in sampled.frames]  # a scene change, not a uniform pick
    assert sampled.problems == {}
    assert decide(service, sampled) is Action.BLOCK

    first_only = DecodeLimits(media=MediaLimits(sample_frames=False))
    old = decode_post(record(image_b64=data), first_only, 224, pdq=True)
    assert old.frames == ()
    assert decide(service, old) is Action.ALLOW


def test_known_bad_album_image_is_blocked(tmp_path: Path) -> None:
    bad, good = (media.animation([frame], "GIF") for frame in later_bad_frames(2, 1)[::-1])
    album = [{"image_b64": base64.b64encode(bad).decode()}]
    decoded = decode_post(
        record(image_b64=base64.b64encode(good).decode(), images=album),
        DecodeLimits(),
        224,
        pdq=True,
    )
    assert [f.source for f in decoded.frames] == ["image", "images[0]"]
    assert decide(banked_policy(tmp_path), decoded) is Action.BLOCK


def test_sampler_keeps_uniform_frames_and_the_strongest_scene_changes() -> None:
    sampler = FrameSampler(total=100, k=6, scene_change=0.1)
    assert sampler.uniform == {0, 50, 99}
    for index in range(100):
        shade = 250 if index in (20, 21, 70) else 10 + (index % 3)
        thumb = np.full((16, 16), shade, np.uint8)
        sampler.offer(index, thumb, lambda index=index: np.full((2, 2, 3), index, np.uint8))
    kept = [index for index, _ in sampler.frames()]
    # 20 and 70 rise sharply (and 21 stays bright: no change); 22 and 71 fall back.
    assert kept == [0, 20, 22, 50, 70, 99] or kept == [0, 20, 50, 70, 71, 99]
    assert len(kept) <= 6


def test_frame_count_bomb_is_capped_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_frames: list[int] = []
    real = FrameSampler.offer

    def counting(self: FrameSampler, index: int, *args: object) -> None:
        decoded_frames.append(index)
        real(self, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(FrameSampler, "offer", counting)
    limits = DecodeLimits(media=MediaLimits(max_animation_frames=50))
    bomb = base64.b64encode(media.gif_frame_bomb(20_000)).decode()
    decoded = decode_post(record(image_b64=bomb), limits, 224)
    assert ReasonCode.FRAMES_OVER_CAP in decoded.problems
    assert "20000 frames" in decoded.problems[ReasonCode.FRAMES_OVER_CAP]
    assert len(decoded_frames) == 50  # frames past the cap are never decoded
    assert 1 < len(decoded.frames) <= limits.media.frames_per_item


def test_frames_per_post_cap_spans_album_and_animation() -> None:
    animated = base64.b64encode(media.animation(later_bad_frames(20))).decode()
    still = {"image_b64": base64.b64encode(media.png()).decode()}
    media_limits = MediaLimits(max_frames_per_post=6, frames_per_item=8, max_album_images=3)
    limits = DecodeLimits(media=media_limits)
    decoded = decode_post(record(image_b64=animated, images=[still] * 3), limits, 224)
    sources = [f.source for f in decoded.frames]
    assert len(sources) == 6  # 3 frames of the animation, one per album image
    assert sources.count("image") == 3 and sources[3:] == ["images[0]", "images[1]", "images[2]"]


def test_bad_media_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"media\.pooling"):
        DecodeLimits.model_validate({"media": {"pooling": "median"}})
    with pytest.raises(ValueError, match=r"media\.video\.allowed_containers"):
        DecodeLimits.model_validate({"media": {"video": {"allowed_containers": ["avi"]}}})
    with pytest.raises(ValueError, match=r"media\n.*max_frames_per_post \(4\) must be"):
        DecodeLimits.model_validate({"media": {"max_frames_per_post": 4}})
