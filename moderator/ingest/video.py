"""Short videos → sampled frames, with PyAV (FFmpeg) under caps read from the headers (#14).

The container is recognised from its first bytes and its demuxer opened by name: FFmpeg never
probes a post's bytes, so only the allowlisted demuxers (MP4/MOV, Matroska/WebM) ever parse
them, and none that follows references (HLS playlists, concat lists). Codec, duration, frame
rate and frame size are checked from the headers before the first frame is decoded; the
number of frames decoded is capped by duration x frame rate, whatever the stream holds.
"""

from __future__ import annotations

import io
import math
import time
from fractions import Fraction
from functools import partial

import av
import numpy as np
from PIL import Image

from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest.frames import THUMB_SIDE, FrameSampler, SampledFrames, model_pixels
from moderator.media_settings import MediaLimits, VideoLimits

# Our container name → the FFmpeg demuxer opened for it.
_DEMUXERS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "matroska": "matroska"}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def sniff_container(data: bytes) -> str | None:
    """mp4, mov, webm or matroska from the first bytes; None for anything else."""
    if data[4:8] == b"ftyp":
        return "mov" if data[8:12] == b"qt  " else "mp4"
    if data[:4] == _EBML_MAGIC:
        return "webm" if b"webm" in data[:64] else "matroska"
    return None


def sample_video(
    data: bytes, media: MediaLimits, size: int, k: int, deadline: float
) -> SampledFrames:
    """Up to `k` frames of a video. Raises InvalidPostError when nothing can be read (refused
    by a cap or an allowlist, or no frame decodes); a stream that breaks after some frames
    keeps them, with VIDEO_CORRUPT listed."""
    limits = media.video
    if len(data) > limits.max_bytes:
        raise InvalidPostError(
            ReasonCode.VIDEO_TOO_LARGE, f"video is {len(data)} bytes, limit {limits.max_bytes}"
        )
    container_name = sniff_container(data)
    if container_name is None or container_name not in limits.allowed_containers:
        raise InvalidPostError(
            ReasonCode.VIDEO_CONTAINER_UNSUPPORTED,
            f"container {container_name or 'unrecognised'} is not in {limits.allowed_containers}",
        )
    try:
        container = av.open(io.BytesIO(data), mode="r", format=_DEMUXERS[container_name])
    except av.FFmpegError as exc:
        raise InvalidPostError(
            ReasonCode.VIDEO_CORRUPT, f"cannot open {container_name}: {type(exc).__name__}"
        ) from exc
    with container:
        if not container.streams.video:
            raise InvalidPostError(ReasonCode.VIDEO_CORRUPT, "no video stream")
        stream = container.streams.video[0]
        readable = _check_headers(container, stream, limits)
        return _decode(container, stream, readable, media, size, k, deadline)


def _check_headers(
    container: av.container.InputContainer, stream: av.VideoStream, limits: VideoLimits
) -> int:
    """Refuse from the headers; the number of frames to decode at most."""
    codec = stream.codec_context.name
    if codec not in limits.allowed_codecs:
        raise InvalidPostError(
            ReasonCode.VIDEO_CODEC_UNSUPPORTED, f"codec {codec} is not in {limits.allowed_codecs}"
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise InvalidPostError(ReasonCode.VIDEO_CORRUPT, f"frame size {width}x{height}")
    if width * height > limits.max_pixels:
        raise InvalidPostError(
            ReasonCode.VIDEO_TOO_MANY_PIXELS,
            f"frames are {width}x{height}, limit {limits.max_pixels} pixels",
        )
    duration = _duration_s(container, stream)
    if duration is not None and duration > limits.max_duration_s:
        raise InvalidPostError(
            ReasonCode.VIDEO_TOO_LONG, f"video is {duration:.0f} s, limit {limits.max_duration_s} s"
        )
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if fps > limits.max_fps:
        raise InvalidPostError(
            ReasonCode.VIDEO_FRAME_RATE_TOO_HIGH, f"{fps:.1f} frames/s, limit {limits.max_fps}"
        )
    # Whatever the headers claim, never decode more than the caps allow.
    bound = math.ceil(limits.max_duration_s * limits.max_fps)
    if duration is not None and fps > 0:
        return max(1, min(bound, math.ceil(duration * fps)))
    return max(1, min(bound, stream.frames or bound))


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    readable: int,
    media: MediaLimits,
    size: int,
    k: int,
    deadline: float,
) -> SampledFrames:
    sampler = FrameSampler(readable, k, media.scene_change)
    problems: dict[ReasonCode, str] = {}
    width, height = stream.codec_context.width, stream.codec_context.height
    keyframes_only = readable > media.video.decode_every_frame_up_to
    if keyframes_only:
        stream.codec_context.skip_frame = "NONKEY"
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    decoded = 0
    try:
        for frame in container.decode(stream):
            if decoded >= readable:
                problems[ReasonCode.FRAMES_OVER_CAP] = (
                    f"the stream holds more than the {readable} frames its headers allow"
                )
                break
            if decoded and time.monotonic() > deadline:
                problems[ReasonCode.MEDIA_DECODE_BUDGET] = (
                    f"decode time ran out after {decoded} of {readable} frames"
                )
                break
            if frame.time is not None and frame.time > media.video.max_duration_s:
                # Timestamps past what the header claimed: the cap holds on them too.
                problems[ReasonCode.VIDEO_TOO_LONG] = (
                    f"frame {decoded} is at {frame.time:.0f} s, "
                    f"limit {media.video.max_duration_s} s"
                )
                break
            if frame.width * frame.height > width * height:
                # A stream may change size mid-way: the header's cap must still hold.
                problems[ReasonCode.VIDEO_TOO_MANY_PIXELS] = (
                    f"frame {decoded} grows to {frame.width}x{frame.height}"
                )
                break
            thumb = frame.reformat(width=THUMB_SIDE, height=THUMB_SIDE, format="gray")
            position = decoded
            if keyframes_only and frame.time is not None and fps > 0:
                position = min(readable - 1, max(decoded, round(frame.time * fps)))
            sampler.offer(position, thumb.to_ndarray(), partial(_model_pixels, frame, size))
            decoded += 1
    except (av.FFmpegError, ValueError) as exc:
        problems[ReasonCode.VIDEO_CORRUPT] = (
            f"stream breaks after {decoded} frames: {type(exc).__name__}"
        )
    frames = sampler.frames()
    if not frames:
        detail = problems.get(ReasonCode.VIDEO_CORRUPT, "no frame could be decoded")
        raise InvalidPostError(ReasonCode.VIDEO_CORRUPT, detail)
    return SampledFrames(frames, problems, decoded)


def _model_pixels(frame: av.VideoFrame, size: int) -> np.ndarray:
    # Through PIL, as stills are resized: frames and images meet the encoder alike.
    return model_pixels(Image.fromarray(frame.to_ndarray(format="rgb24")), size)
