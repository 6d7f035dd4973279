"""A post's media beyond one still image → the frames the model scores (#14).

Frames come, in order, from the post's image (every sampled frame of an animation), its album
(`images`) and its video. Each frame is one image row for the encoder, keyed in the feature
cache by a digest: a still image's file sha256 (as before #14, so a still shares its cache
entry), and for a frame of an animation or video the sha256 of its model pixels (the
`size` x `size` RGB bytes, which are exactly what the encoder reads). What cannot be read is
listed as a problem and the rest is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest.frames import SampledFrames, is_animation_candidate, sample_animation
from moderator.ingest.image import decode_image_views
from moderator.ingest.url_fetch import ImageFetcher
from moderator.ingest.video import sample_video
from moderator.schema.post import Post
from moderator.signals.hashes import Md5Signal, PdqSignal, Sha256Signal

FRAME_HASHES = "frame_hashes"
"""Key in DecodedPost.signals: {"frames": [per-frame hashes]} for the hash banks."""
MEDIA_SIGNAL = "media"
"""Key in DecodedPost.signals set when the post is decided: {"frames", "worst_frame"}, what
policies read as post.frames and post.worst_frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    pixels: np.ndarray
    """`size` x `size` RGB uint8, as a still image's."""
    digest: str
    """Feature-cache key: file sha256 of a still, sha256 of `pixels` for a sampled frame."""
    source: str
    """"image", "images[2]" or "video"."""
    position: int
    """Frame number within its source (0 for a still)."""
    hashes: dict[str, Any] = field(default_factory=dict)
    """What hash banks compare: pdq/quality (when a PDQ bank is loaded) and a still's or a
    video's file sha256/md5 (on its first frame)."""


@dataclass(slots=True)
class Media:
    frames: list[Frame] = field(default_factory=list)
    problems: dict[ReasonCode, str] = field(default_factory=dict)

    def problem(self, code: ReasonCode, detail: str) -> None:
        self.problems.setdefault(code, detail)


def has_more_media(post: Post, image_bytes: bytes | None, limits: DecodeLimits) -> bool:
    """Whether the post has more than one still image to read (album, video, animation)."""
    if post.images or post.has_video:
        return True
    return (
        image_bytes is not None
        and limits.media.sample_frames
        and is_animation_candidate(image_bytes)
    )


def load_media(
    post: Post,
    first: tuple[bytes, np.ndarray, dict[str, Any]] | None,
    limits: DecodeLimits,
    size: int,
    fetcher: ImageFetcher | None,
    pdq: bool,
) -> Media:
    """Every frame to score. `first`: the post's own image as already decoded (bytes,
    pixels, digests), or None when it has none or it was unreadable."""
    media_limits = limits.media
    deadline = time.monotonic() + media_limits.decode_budget_ms / 1000
    media = Media()
    album = post.images[: media_limits.max_album_images]
    if len(post.images) > len(album):
        media.problem(
            ReasonCode.ALBUM_TOO_LARGE,
            f"{len(post.images)} album images; the first {len(album)} are read",
        )
    items = (first is not None) + len(album) + post.has_video

    def room(done: int) -> int:
        """Frames this item may take: each later item keeps at least one."""
        left = media_limits.max_frames_per_post - len(media.frames) - (items - done - 1)
        per_item = media_limits.frames_per_item if media_limits.sample_frames else 1
        return max(1, min(per_item, left))

    done = 0
    if first is not None:
        data, pixels, digests = first
        _add_still(
            media,
            "image",
            data,
            pixels,
            str(digests["sha256"]["hash"]),
            limits,
            size,
            room(done),
            deadline,
            pdq,
        )
        done += 1
    for index, entry in enumerate(album):
        source = f"images[{index}]"
        try:
            data = _bytes(entry.image_b64, entry.image_url, limits.max_image_bytes, fetcher)
            pixels, _ = decode_image_views(data, limits, size)
        except InvalidPostError as exc:
            media.problem(ReasonCode.ALBUM_IMAGE_UNREADABLE, f"{source}: {exc}")
        except Exception as exc:
            media.problem(ReasonCode.ALBUM_IMAGE_UNREADABLE, f"{source}: {type(exc).__name__}")
        else:
            digest = hashlib.sha256(data).hexdigest()
            _add_still(media, source, data, pixels, digest, limits, size, room(done), deadline, pdq)
        done += 1
    if post.has_video:
        _add_video(media, post, limits, size, fetcher, room(done), deadline, pdq)
    return media


def _add_still(
    media: Media,
    source: str,
    data: bytes,
    pixels: np.ndarray,
    digest: str,
    limits: DecodeLimits,
    size: int,
    k: int,
    deadline: float,
    pdq: bool,
) -> None:
    """A decoded image: its first frame, then its other sampled frames if it animates."""
    sampled = SampledFrames([])
    if limits.media.sample_frames and k > 1 and is_animation_candidate(data):
        try:
            sampled = sample_animation(data, limits.media, size, k, deadline)
        except Exception as exc:
            media.problem(ReasonCode.ANIMATION_CORRUPT, f"{source}: {type(exc).__name__}")
    for code, detail in sampled.problems.items():
        media.problem(code, f"{source}: {detail}")
    file_hashes = {"sha256": digest, "md5": Md5Signal.digest(data)}
    media.frames.append(Frame(pixels, digest, source, 0, {**file_hashes, **_pdq(pixels, pdq)}))
    for position, frame_pixels in sampled.frames:
        if position:  # frame 0 is the still decoder's, already added
            _add_frame(media, source, position, frame_pixels, pdq, {})


def _add_video(
    media: Media,
    post: Post,
    limits: DecodeLimits,
    size: int,
    fetcher: ImageFetcher | None,
    k: int,
    deadline: float,
    pdq: bool,
) -> None:
    video = limits.media.video
    if not video.enabled:
        media.problem(ReasonCode.VIDEO_DISABLED, "the post carries a video; video is switched off")
        return
    try:
        data = _bytes(post.video_b64, post.video_url, video.max_bytes, fetcher, video=True)
        sampled = sample_video(data, limits.media, size, k, deadline)
    except InvalidPostError as exc:
        media.problem(exc.reason, exc.detail)
        return
    except Exception as exc:
        # FFmpeg and PyAV parse untrusted bytes: any other failure means unreadable.
        media.problem(ReasonCode.VIDEO_CORRUPT, f"cannot decode video: {type(exc).__name__}")
        return
    for code, detail in sampled.problems.items():
        media.problem(code, detail)
    file_hashes = {"sha256": Sha256Signal.digest(data), "md5": Md5Signal.digest(data)}
    for number, (position, pixels) in enumerate(sampled.frames):
        _add_frame(media, "video", position, pixels, pdq, file_hashes if number == 0 else {})


def _add_frame(
    media: Media,
    source: str,
    position: int,
    pixels: np.ndarray,
    pdq: bool,
    file_hashes: dict[str, str],
) -> None:
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    hashes = {**file_hashes, **_pdq(pixels, pdq)}
    media.frames.append(Frame(pixels, digest, source, position, hashes))


def _pdq(pixels: np.ndarray, pdq: bool) -> dict[str, Any]:
    return dict(PdqSignal.run_on_pixels(pixels)) if pdq else {}


def _bytes(
    inline: str | None,
    url: str | None,
    max_bytes: int,
    fetcher: ImageFetcher | None,
    *,
    video: bool = False,
) -> bytes:
    kind = "video" if video else "image"
    if url is not None:
        if fetcher is None:
            code = ReasonCode.VIDEO_INVALID if video else ReasonCode.IMAGE_URL_DISABLED
            raise InvalidPostError(code, f"{kind}_url given but URL fetching is disabled")
        return fetcher.fetch(url)
    assert inline is not None
    too_large = ReasonCode.VIDEO_TOO_LARGE if video else ReasonCode.IMAGE_TOO_LARGE
    if len(inline) * 3 // 4 > max_bytes:
        # Refused before decoding the base64, as the post's own image is.
        raise InvalidPostError(
            too_large, f"{kind} is ~{len(inline) * 3 // 4} bytes, limit {max_bytes}"
        )
    try:
        return base64.b64decode(inline, validate=True)
    except (binascii.Error, ValueError) as exc:
        code = ReasonCode.VIDEO_INVALID if video else ReasonCode.BAD_BASE64
        raise InvalidPostError(code, f"{kind}_b64 is not base64") from exc
