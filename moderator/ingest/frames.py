"""Frames of an animated GIF or WebP, sampled uniformly plus on scene changes (#14).

The still decoder (moderator.ingest.image) has already read the first frame under the byte
and pixel caps. Here the frame count comes from the header (Pillow's `n_frames`: the GIF
block chain or the WebP demuxer, no pixels decoded) and is capped with the canvas size
before any later frame is decoded, so a frame-count bomb costs one header scan.
"""

from __future__ import annotations

import heapq
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from PIL import Image, ImageSequence

from moderator.errors import ReasonCode
from moderator.media_settings import MediaLimits

THUMB_SIDE = 16
"""Side of the grey thumbnails compared for scene changes: cheap and blind to noise."""


@dataclass(slots=True)
class FrameSampler:
    """Keeps up to `k` frames of a stream of `total`: half spread uniformly over the stream,
    the rest the strongest scene changes (thumbnail difference from the previous frame at
    least `scene_change`). Only kept frames are converted to model pixels. Frames may skip
    numbers (keyframes only): a uniform pick is then the first frame at or after it."""

    total: int
    k: int
    scene_change: float
    uniform: frozenset[int] = field(init=False)
    _targets: list[int] = field(init=False, default_factory=list)
    _scenes: list[tuple[float, int, np.ndarray]] = field(init=False, default_factory=list)
    _kept: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    _previous: np.ndarray | None = field(init=False, default=None)
    _last: tuple[int, Callable[[], np.ndarray]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.total <= self.k:
            self.uniform = frozenset(range(self.total))
        else:
            picks = np.linspace(0, self.total - 1, math.ceil(self.k / 2)).round().astype(int)
            self.uniform = frozenset(int(i) for i in picks)
        self._targets = sorted(self.uniform, reverse=True)  # the next pick is last

    def offer(self, index: int, thumb: np.ndarray, pixels: Callable[[], np.ndarray]) -> None:
        """Frame `index` (decoded in order): its grey thumbnail, and how to get its pixels."""
        difference = 1.0 if self._previous is None else _difference(thumb, self._previous)
        self._previous = thumb
        self._last = (index, pixels)
        if self._targets and index >= self._targets[-1]:
            self._kept[index] = pixels()
            while self._targets and self._targets[-1] <= index:
                self._targets.pop()
            return
        room = self.k - len(self.uniform)
        if difference < self.scene_change or room <= 0:
            return
        if len(self._scenes) < room:
            heapq.heappush(self._scenes, (difference, index, pixels()))
        elif difference > self._scenes[0][0]:
            heapq.heapreplace(self._scenes, (difference, index, pixels()))

    def frames(self) -> list[tuple[int, np.ndarray]]:
        """(frame number, pixels) of the kept frames, in stream order."""
        kept = dict(self._kept)
        kept.update((index, pixels) for _, index, pixels in self._scenes)
        if self._targets and self._last is not None and self._last[0] not in kept:
            # The stream ended before the last uniform pick (keyframes only, or fewer frames
            # than the header said): its last frame stands for the end.
            kept[self._last[0]] = self._last[1]()
        return sorted(kept.items(), key=lambda item: item[0])


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) / 255.0


def grey_thumb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))


def model_pixels(image: Image.Image, size: int) -> np.ndarray:
    """An RGB frame resized as the still decoder resizes (bilinear, to `size` x `size`)."""
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def is_animation_candidate(data: bytes) -> bool:
    """GIF or WebP by their magic bytes: the only still formats here that animate."""
    return data[:6] in (b"GIF87a", b"GIF89a") or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


@dataclass(slots=True)
class SampledFrames:
    frames: list[tuple[int, np.ndarray]]
    """(frame number, model pixels), in stream order; empty for a still image."""
    problems: dict[ReasonCode, str] = field(default_factory=dict)
    frame_count: int = 1


def sample_animation(
    data: bytes, media: MediaLimits, size: int, k: int, deadline: float
) -> SampledFrames:
    """Sample an animated GIF/WebP whose first frame the still decoder read. Returns no frames
    for a still image; a frame that fails to decode ends the scan with ANIMATION_CORRUPT."""
    image = Image.open(io.BytesIO(data))
    total = int(getattr(image, "n_frames", 1))
    if total <= 1:
        return SampledFrames([])
    problems: dict[ReasonCode, str] = {}
    width, height = image.size
    cap = min(media.max_animation_frames, media.max_animation_pixels // max(1, width * height))
    readable = max(1, min(total, cap))
    if total > readable:
        problems[ReasonCode.FRAMES_OVER_CAP] = (
            f"animation has {total} frames of {width}x{height}; the first {readable} are read"
        )
    if readable == 1:
        return SampledFrames([], problems, total)  # the still decoder read the only one
    sampler = FrameSampler(readable, k, media.scene_change)
    index = 0
    try:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            if index >= readable:
                break
            if index and time.monotonic() > deadline:
                problems[ReasonCode.MEDIA_DECODE_BUDGET] = (
                    f"decode time ran out after {index} of {readable} frames"
                )
                break
            rgb = frame.convert("RGB")
            sampler.offer(index, grey_thumb(rgb), partial(model_pixels, rgb, size))
    except Exception as exc:
        # Pillow parses untrusted bytes: any failure past the first frame ends the scan.
        problems[ReasonCode.ANIMATION_CORRUPT] = (
            f"frame {index} of {readable} cannot be read: {type(exc).__name__}; "
            "the frames before it are used"
        )
    return SampledFrames(sampler.frames(), problems, total)
