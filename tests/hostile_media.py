"""Hostile animations, videos and albums (#14) for tests/hostile_corpus.py: frame-count and
dimension bombs, a 10-hour duration header, corrupt streams, unsupported codecs, polyglots."""

from __future__ import annotations

import base64
import io
import struct
from fractions import Fraction

import av
import numpy as np
from PIL import Image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def gif_frame_bomb(frames: int, side: int = 1) -> bytes:
    """A GIF of `frames` frames of `side` x `side`, written block by block (no encoder)."""
    screen = (
        b"GIF89a" + struct.pack("<HH", side, side) + b"\x80\x00\x00" + b"\x00" * 3 + b"\xff" * 3
    )
    block = b",\x00\x00\x00\x00" + struct.pack("<HH", 1, 1) + b"\x00\x02\x02D\x01\x00"
    return screen + block * frames + b";"


def gif_canvas_bomb(side: int, frames: int) -> bytes:
    """A large canvas with many 1x1 frames: canvas pixels x frames over the cap."""
    screen = (
        b"GIF89a" + struct.pack("<HH", side, side) + b"\x80\x00\x00" + b"\x00" * 3 + b"\xff" * 3
    )
    block = b",\x00\x00\x00\x00" + struct.pack("<HH", 1, 1) + b"\x00\x02\x02D\x01\x00"
    return screen + block * frames + b";"


def video(
    container: str = "mp4",
    codec: str = "h264",
    frames: int = 12,
    size: tuple[int, int] = (32, 32),
    rate: int = 10,
    last_pts: int | None = None,
    pix_fmt: str = "yuv420p",
) -> bytes:
    """A small generated video; `last_pts` puts the last frame that far (in 1/rate s)."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, rate)
        for index in range(frames):
            shade = (index * 20) % 256
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), shade, np.uint8), format="rgb24"
            )
            frame.pts = last_pts if last_pts is not None and index == frames - 1 else index
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return out.getvalue()


def png(side: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 20, 20)).save(out, format="PNG")
    return out.getvalue()


def animation(frames: list[np.ndarray], fmt: str = "GIF") -> bytes:
    """An animated GIF or WebP of these RGB frames (100 ms each)."""
    images = [Image.fromarray(frame) for frame in frames]
    out = io.BytesIO()
    save: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    images[0].save(
        out, format=fmt, save_all=True, append_images=images[1:], duration=100, loop=0, **save
    )
    return out.getvalue()


def video_of(frames: list[np.ndarray], container: str = "mp4", codec: str = "h264") -> bytes:
    """A video of these RGB frames (even sides) at 10 frames/s, high quality."""
    out = io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "h264":
            stream.options = {"crf": "12"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return out.getvalue()


def block_frames(count: int, side: int = 64) -> list[np.ndarray]:
    """`count` frames of random 8x8-pixel colour blocks (seeded): each codes to some bytes."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (count, side // 8, side // 8, 3), dtype=np.uint8)
    return [np.repeat(np.repeat(frame, 8, axis=0), 8, axis=1) for frame in blocks]
