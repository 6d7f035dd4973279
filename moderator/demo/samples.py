"""A reproducible sample stream: generated images and captions, reposts, and malformed records.

Every malformed record carries the reason code it must be dead-lettered with, so
the demo's summary and the end-to-end test can check the pipeline against it.
"""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from PIL import Image, ImageDraw

from moderator.errors import ReasonCode

NEUTRAL_CAPTIONS = [
    "Sunset at the beach with friends",
    "my new bike!",
    "Homemade pasta tonight",
    "First snow of the year",
    "Look at this view from the trail",
    "Coffee and a good book",
    "Our team won the match today",
    "Trying out a new recipe",
    "Weekend at the lake",
    "Happy birthday to my sister",
    "Garden is finally blooming",
    "City lights after the rain",
    "Just finished my first marathon",
    "Throwback to last summer",
    "Cat refuses to move",
    "New paint colour for the kitchen",
    "Road trip playlist suggestions?",
    "Morning run done",
    "",
    "Concert was amazing last night",
]
HARMFUL_CAPTIONS = [
    "I am going to hurt you and your whole family",
    "you are a worthless idiot, shut up",
    "people like them are vermin and should be driven out",
    "I will kill you tomorrow",
    "what a stupid disgusting loser",
    "they should all be beaten until they leave",
]


@dataclass(frozen=True, slots=True)
class SampleRecord:
    key: bytes
    value: bytes
    post_id: str | None
    expected_reason: ReasonCode | None  # None: a post that must get a decision
    expected_problems: tuple[ReasonCode, ...] = ()  # what its decision must list

    @property
    def valid(self) -> bool:
        """A post (to be decided, perhaps with problems), not a record to dead-letter."""
        return self.expected_reason is None


def generate_image(rng: random.Random, size: int = 256) -> bytes:
    """A random composition of shapes, as JPEG or PNG bytes."""
    background = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 9)):
        box = (
            sorted(rng.randrange(size) for _ in range(2)),
            sorted(rng.randrange(size) for _ in range(2)),
        )
        xy = (box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1)
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(xy, fill=fill)
    out = io.BytesIO()
    if rng.random() < 0.5:
        image.save(out, format="JPEG", quality=85)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _post(
    post_id: str, rng: random.Random, now: datetime, caption: str, image: bytes | None
) -> dict[str, Any]:
    post: dict[str, Any] = {
        "schema_version": 1,
        "post_id": post_id,
        "author_id": f"author-{rng.randrange(200)}",
        "created_at": (now - timedelta(seconds=rng.randrange(3600))).isoformat(),
        "caption": caption,
        "lang": "en",
    }
    if image is not None:
        post["image_b64"] = base64.b64encode(image).decode()
    return post


def _malformed(index: int, rng: random.Random, now: datetime, run: str) -> SampleRecord:
    post_id = f"{run}-bad-{index}"
    good = _post(post_id, rng, now, "fine caption", None)
    kind = index % 9
    # Kinds 0-3 are not posts (dead-lettered); 4-8 are posts with an unusable image, decided
    # from their caption with the problem listed.
    reason: ReasonCode
    if kind == 0:
        value, reason = b'{"post_id": "' + post_id.encode() + b'", ', ReasonCode.INVALID_JSON
    elif kind == 1:
        value = b'{"post_id": "' + post_id.encode() + b'", "caption": "\xff\xfe"}'
        reason = ReasonCode.INVALID_UTF8
    elif kind == 2:
        del good["author_id"]
        value, reason = orjson.dumps(good), ReasonCode.SCHEMA_VIOLATION
    elif kind == 3:
        good["post_id"] = 12345
        value, reason = orjson.dumps(good), ReasonCode.SCHEMA_VIOLATION
    elif kind == 4:
        good["image_b64"] = "this is *not* base64!"
        value, reason = orjson.dumps(good), ReasonCode.BAD_BASE64
    elif kind == 5:
        truncated = generate_image(rng)[:200]
        good["image_b64"] = base64.b64encode(truncated).decode()
        value, reason = orjson.dumps(good), ReasonCode.IMAGE_CORRUPT
    elif kind == 6:
        good["image_b64"] = base64.b64encode(_png_header_only(30_000, 30_000)).decode()
        value, reason = orjson.dumps(good), ReasonCode.IMAGE_TOO_MANY_PIXELS
    elif kind == 7:
        out = io.BytesIO()
        Image.new("RGB", (16, 16)).save(out, format="BMP")
        good["image_b64"] = base64.b64encode(out.getvalue()).decode()
        value, reason = orjson.dumps(good), ReasonCode.IMAGE_FORMAT_NOT_ALLOWED
    else:
        good["image_url"] = "https://images.example.com/cat.jpg"
        value, reason = orjson.dumps(good), ReasonCode.IMAGE_URL_DISABLED
    if kind >= 4:
        return SampleRecord(post_id.encode(), value, post_id, None, (reason,))
    return SampleRecord(post_id.encode(), value, post_id, reason)


MEME_TEXTS = [
    "when the coffee kicks in on a monday",
    "me pretending to understand the meeting",
    "nobody reads the terms and conditions",
    "that feeling when the build passes first time",
]
HARMFUL_MEME_TEXTS = ["i will kill you if you post that again", "going to kill everyone at school"]
MEME_CAPTIONS = ["look at this", "lol", "so true", "mood"]


def _meme(post_id: str, rng: random.Random, now: datetime) -> SampleRecord:
    from moderator.demo.memes import render_meme  # numpy + fonts: only for streams with memes

    texts = HARMFUL_MEME_TEXTS if rng.random() < 1 / 3 else MEME_TEXTS
    image = render_meme(rng.choice(texts), rng, jpeg=False)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    post = _post(post_id, rng, now, rng.choice(MEME_CAPTIONS), buffer.getvalue())
    return SampleRecord(post_id.encode(), orjson.dumps(post), post_id, None)


def sample_stream(
    count: int,
    seed: int = 7,
    image_share: float = 0.6,
    repost_share: float = 0.25,
    harmful_share: float = 0.1,
    malformed_share: float = 0.03,
    run_id: str = "demo",
    exact_reposts: bool = False,
    meme_share: float = 0.0,
) -> list[SampleRecord]:
    """`count` records in a fixed order; the same seed gives the same bytes.

    meme_share: posts whose message is text drawn into the image (moderator.demo.memes) under
    a neutral caption, a third of them harmful: only OCR can read them. 0 draws nothing, so
    streams without memes are the same bytes as before memes existed.

    With exact_reposts, each original post's caption is its own (the pool caption tagged
    with the post id) and a repost copies its original's image and caption, so only
    reposts repeat features (the benchmark's streams).
    """
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    images: list[bytes] = []
    caption_of: dict[bytes, str] = {}
    records: list[SampleRecord] = []
    malformed = 0
    for i in range(count):
        if rng.random() < malformed_share:
            records.append(_malformed(malformed, rng, now, run_id))
            malformed += 1
            continue
        if meme_share and rng.random() < meme_share:
            records.append(_meme(f"{run_id}-meme-{i}", rng, now))
            continue
        image = None
        repost = False
        if rng.random() < image_share:
            if images and rng.random() < repost_share:
                image, repost = rng.choice(images), True
            else:
                image = generate_image(rng)
                images.append(image)
        pool = HARMFUL_CAPTIONS if rng.random() < harmful_share else NEUTRAL_CAPTIONS
        post_id = f"{run_id}-{i}"
        caption = rng.choice(pool)
        if exact_reposts:
            if image is not None and repost:
                caption = caption_of[image]
            else:
                caption = f"{caption} ({post_id})"
                if image is not None:
                    caption_of[image] = caption
        value = orjson.dumps(_post(post_id, rng, now, caption, image))
        records.append(SampleRecord(post_id.encode(), value, post_id, None))
    return records
