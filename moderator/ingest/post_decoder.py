"""Record bytes → a post to decide (with the problems of its parts), or a reason to dead-letter.

A record that is not a post — not JSON, not an object, a contract version this worker does
not read, or no usable post_id, author_id or created_at (the fields the platform fills in) —
raises InvalidPostError with a record reason and is dead-lettered. Everything else is a post
and is decided: a part that cannot be used (caption over the cap or not a string, invalid
lang or metadata, an image that cannot be read) is read as absent or cut to the cap, and its
reason code is listed in `problems`. A dead-lettered post is never moderated, so dead-lettering
a post for its parts would be an evasion path; `limits.dead_letter_problems` restores it per
reason for those who want it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic_core
from pydantic import ValidationError

from moderator.config import DecodeLimits
from moderator.errors import UNREADABLE_IMAGE_PROBLEMS, InvalidPostError, ReasonCode
from moderator.ingest.image import decode_image_views
from moderator.ingest.media import FRAME_HASHES, Frame, has_more_media, load_media
from moderator.ingest.url_fetch import ImageFetcher
from moderator.schema.post import MAX_CAPTION_CHARS, POST_SCHEMA_VERSION, Post
from moderator.signals import SignalOutput, SignalSubject
from moderator.signals.hashes import Md5Signal, PdqSignal, Sha256Signal
from moderator.text import NormalisedText, normalise_text

# Fields read as absent when unusable, and the problem that says so.
_SALVAGED = {
    "caption": ReasonCode.CAPTION_INVALID,
    "lang": ReasonCode.LANG_INVALID,
    "metadata": ReasonCode.METADATA_INVALID,
    "image_b64": ReasonCode.IMAGE_INVALID,
    "image_url": ReasonCode.IMAGE_INVALID,
    "images": ReasonCode.ALBUM_IMAGE_UNREADABLE,
    "video_b64": ReasonCode.VIDEO_INVALID,
    "video_url": ReasonCode.VIDEO_INVALID,
}
# Any contract field name as it appears in JSON: one scan counts how often each is given.
_FIELD_NAMES = re.compile(b'"(%s)"' % b"|".join(name.encode() for name in Post.model_fields))
_IMAGE_KEY = b'"image_b64"'
# A key written with an escape ("post\u005fid") that a byte count would not see: an escape,
# then the rest of the string and a colon. Only run when the record has a backslash at all.
_ESCAPED_KEY = re.compile(rb'\\[^"]*+"\s*:')

Problems = Mapping[ReasonCode, str]
"""Problem code → detail (for logs and dead-letter headers; never the post's content)."""

# Digests of the image file, always: sha256 keys the caches, MD5 costs as little (~0.2 ms
# per 100 kB) and lets MD5 banks match fetched images as well as inline ones.
_DIGESTS = (Sha256Signal(), Md5Signal())
_PDQ = PdqSignal()


@dataclass(frozen=True, slots=True)
class ParsedPost:
    post: Post
    text: NormalisedText
    """The caption as the model and term lists read it (moderator.text)."""
    problems: Problems = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecodedPost:
    post: Post
    pixels: np.ndarray | None
    image_sha256: str | None
    text: NormalisedText | None = None
    """Normalised caption; None → computed from post.caption on first use."""
    problems: Problems = field(default_factory=dict)
    signals: dict[str, SignalOutput] = field(default_factory=dict)
    """Signal name → outputs: the digests from decoding, then the worker's pool signals
    (OCR, image safety) as they finish. Policies read them as ``signals.<name>.<field>``."""
    reading_image: np.ndarray | None = None
    """A larger RGB copy for reading text (OCR on), released once the pool signals ran."""
    frames: tuple[Frame, ...] = ()
    """Every frame the model scores when there is more than one (an animation, an album, a
    video; frame 0 is `pixels`); empty for a post with one still image or none."""
    frame_pooling: str = "max"
    """How the frames' scores become the post's (limits.media.pooling)."""

    @property
    def image_text(self) -> str:
        """Text read from the image (normalised); '' when OCR is off or found none."""
        ocr = self.signals.get("ocr")
        return str(ocr["text"]) if ocr else ""

    def add_problem(self, code: ReasonCode, detail: str) -> None:
        """A problem found after decoding (by a signal); the first detail per code stays."""
        if code not in self.problems:
            object.__setattr__(self, "problems", {**self.problems, code: detail})

    def release_reading_image(self) -> None:
        """Drop the reading copy once the signals read it (it is the largest thing held)."""
        object.__setattr__(self, "reading_image", None)  # frozen: released, never replaced

    def subject(self) -> SignalSubject:
        """What the worker's pool signals read of this post."""
        return SignalSubject(
            image_sha256=self.image_sha256,
            pixels=self.pixels,
            reading_image=self.reading_image,
            caption=self.caption_text.text,
            image_text=self.image_text,
        )

    @property
    def caption_text(self) -> NormalisedText:
        return self.text if self.text is not None else normalise_text(self.post.caption)

    @property
    def image_unreadable(self) -> bool:
        """The post carried an image and none could be read."""
        return not UNREADABLE_IMAGE_PROBLEMS.isdisjoint(self.problems)


def decode_post(
    value: bytes | None,
    limits: DecodeLimits,
    image_size: int,
    fetcher: ImageFetcher | None = None,
    key: bytes | None = None,
    *,
    reading_side: int | None = None,
    pdq: bool = False,
) -> DecodedPost:
    """Read one record value; raises InvalidPostError only for what is dead-lettered."""
    parsed = parse_post(value, limits, key)
    return load_image(parsed, limits, image_size, fetcher, reading_side=reading_side, pdq=pdq)


def load_image(
    parsed: ParsedPost,
    limits: DecodeLimits,
    image_size: int,
    fetcher: ImageFetcher | None = None,
    *,
    reading_side: int | None = None,
    pdq: bool = False,
) -> DecodedPost:
    """Decode a parsed post's image (fetching image_url posts when `fetcher` is given); an
    image that cannot be read becomes a problem, and the post goes on without pixels.

    The digests are computed here, once, from the bytes as received, inline or fetched:
    sha256 and MD5 always, PDQ when `pdq` (a PDQ bank needs it). `reading_side`: also keep a
    copy for OCR with at most that longest side.
    """
    post, problems = parsed.post, dict(parsed.problems)
    pixels, reading, digest, image_bytes = None, None, None, None
    signals: dict[str, SignalOutput] = {}
    try:
        image_bytes = _image_bytes(post, limits, fetcher)
        if image_bytes is not None:
            pixels, reading = decode_image_views(image_bytes, limits, image_size, reading_side)
            signals = _digests(image_bytes, pixels, pdq)
            digest = str(signals["sha256"]["hash"])
    except InvalidPostError as exc:
        problems[exc.reason] = exc.detail
    except Exception as exc:
        # PIL and the HEIF plugin parse untrusted bytes: any other failure means unreadable.
        problems[ReasonCode.IMAGE_CORRUPT] = f"cannot decode image: {type(exc).__name__}"
    frames: tuple[Frame, ...] = ()
    if has_more_media(post, image_bytes, limits):
        first = (image_bytes, pixels, signals) if image_bytes and pixels is not None else None
        media = load_media(post, first, limits, image_size, fetcher, pdq)
        for code, detail in media.problems.items():
            problems.setdefault(code, detail)
        if pixels is None and media.frames:
            # No readable image of its own: the first frame stands for it (signals, row 0).
            pixels, digest = media.frames[0].pixels, media.frames[0].digest
        if len(media.frames) > 1:
            frames = tuple(media.frames)
        if any(frame.hashes for frame in media.frames):
            signals[FRAME_HASHES] = {"frames": [frame.hashes for frame in media.frames]}
    refuse_listed_problems(problems, limits)
    return DecodedPost(
        post,
        pixels,
        digest,
        parsed.text,
        problems,
        signals,
        reading,
        frames,
        limits.media.pooling,
    )


def _digests(image_bytes: bytes, pixels: np.ndarray, pdq: bool) -> dict[str, SignalOutput]:
    subject = SignalSubject(image_bytes=image_bytes, pixels=pixels)
    signals = {signal.name: signal.run(subject) for signal in _DIGESTS}
    if pdq:
        signals[_PDQ.name] = _PDQ.run(subject)
    return signals


def _image_bytes(post: Post, limits: DecodeLimits, fetcher: ImageFetcher | None) -> bytes | None:
    if post.image_url is not None:
        if fetcher is None:
            raise InvalidPostError(
                ReasonCode.IMAGE_URL_DISABLED, "image_url given but URL fetching is disabled"
            )
        return fetcher.fetch(post.image_url)
    if post.image_b64 is None:
        return None
    decoded_size = len(post.image_b64) * 3 // 4
    if decoded_size > limits.max_image_bytes:
        # Refuse before decoding: no point allocating the bytes of an image we won't read.
        raise InvalidPostError(
            ReasonCode.IMAGE_TOO_LARGE,
            f"image is ~{decoded_size} bytes, limit {limits.max_image_bytes}",
        )
    try:
        return base64.b64decode(post.image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPostError(ReasonCode.BAD_BASE64, f"image_b64 is not base64: {exc}") from exc


def refuse_listed_problems(problems: Problems, limits: DecodeLimits) -> None:
    """Raise for the first problem the settings dead-letter (`limits.dead_letter_problems`)."""
    if not problems or not limits.dead_letter_problems:
        return  # the common case
    for problem, detail in problems.items():
        if problem in limits.dead_letter_problems:
            raise InvalidPostError(problem, detail)


def parse_post(value: bytes | None, limits: DecodeLimits, key: bytes | None = None) -> ParsedPost:
    """Bytes (and the record's key) → the post and its problems, without touching the image."""
    if value is None:
        raise InvalidPostError(ReasonCode.INVALID_JSON, "record has no value (tombstone)")
    raw = _json_object(value, limits)
    problems: dict[ReasonCode, str] = {}
    if raw.get("image_b64") is not None and raw.get("image_url") is not None:
        # The inline bytes are in hand; the URL could point anywhere.
        problems[ReasonCode.IMAGE_SOURCE_CONFLICT] = "image_b64 and image_url both given"
        del raw["image_url"]
    if raw.get("video_b64") is not None and raw.get("video_url") is not None:
        problems[ReasonCode.VIDEO_SOURCE_CONFLICT] = "video_b64 and video_url both given"
        del raw["video_url"]
    caption = raw.get("caption")
    if isinstance(caption, str) and len(caption) > MAX_CAPTION_CHARS:
        problems[ReasonCode.CAPTION_TOO_LONG] = (
            f"caption is {len(caption)} characters; the first {MAX_CAPTION_CHARS} are read"
        )
        raw["caption"] = caption[:MAX_CAPTION_CHARS]
    post = _validate(raw, problems)
    if key is not None and key.decode("utf-8", "replace") != post.post_id:
        problems[ReasonCode.KEY_MISMATCH] = "the record key is not the post_id"
    repeated = _repeated_fields(value, raw)
    if repeated:
        problems[ReasonCode.DUPLICATE_FIELDS] = f"fields given twice: {', '.join(repeated)}"
    text = normalise_text(post.caption)
    for problem in text.problems:
        problems[problem] = "removed from the text the model reads"
    refuse_listed_problems(problems, limits)
    return ParsedPost(post, text, problems)


def _json_object(value: bytes, limits: DecodeLimits) -> dict[str, Any]:
    if len(value) > limits.max_message_bytes:
        raise InvalidPostError(
            ReasonCode.MESSAGE_TOO_LARGE,
            f"record is {len(value)} bytes, limit {limits.max_message_bytes}",
        )
    try:
        # pydantic-core's parser validates UTF-8 itself and peaks at ~1x the record size
        # (orjson peaked at 13x on a 10 MB record); as fast as orjson on small posts.
        raw = pydantic_core.from_json(value, allow_inf_nan=False)
    except ValueError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as utf8:
            raise InvalidPostError(
                ReasonCode.INVALID_UTF8, f"invalid UTF-8 at byte {utf8.start}"
            ) from exc
        raise InvalidPostError(ReasonCode.INVALID_JSON, str(exc)) from exc
    if not isinstance(raw, dict):
        raise InvalidPostError(
            ReasonCode.SCHEMA_VIOLATION, f"expected a JSON object, got {type(raw).__name__}"
        )
    version = raw.get("schema_version", POST_SCHEMA_VERSION)
    if version != POST_SCHEMA_VERSION:
        raise InvalidPostError(
            ReasonCode.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r}; this worker reads {POST_SCHEMA_VERSION}",
        )
    return raw


def _validate(raw: dict[str, Any], problems: dict[ReasonCode, str]) -> Post:
    """Validate; fields in `_SALVAGED` that fail are dropped (read as absent) with a problem."""
    try:
        return Post.model_validate(raw)
    except ValidationError as exc:
        failed = {str(e["loc"][0]) if e["loc"] else "(record)": e for e in exc.errors()}
        if not failed.keys() <= _SALVAGED.keys():
            raise InvalidPostError(ReasonCode.SCHEMA_VIOLATION, _summarise(exc)) from exc
        for name, error in failed.items():
            problems.setdefault(_SALVAGED[name], f"{name}: {error['msg']}")
            del raw[name]
    return Post.model_validate(raw)


def _repeated_fields(value: bytes, raw: dict[str, Any]) -> list[str]:
    """Top-level fields the JSON gives twice. The parser keeps the last, another reader may
    keep the first: a post could show one caption and be moderated on another."""
    # Count around the inline image, which is nearly all of an image post's bytes.
    start, end = _image_span(value, raw.get("image_b64"))
    names = _FIELD_NAMES.findall(value, 0, start or len(value))
    if end:
        names += _FIELD_NAMES.findall(value, end)
    maybe = len(names) != len(set(names))
    if not maybe and (value.find(b"\\", 0, start) >= 0 or value.find(b"\\", end) >= 0):
        maybe = _ESCAPED_KEY.search(value) is not None
    if not maybe:
        return []  # the common case: one scan, no second parse
    repeated: list[list[str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        counts = Counter(name for name, _ in items)
        repeated.append(sorted(name for name, count in counts.items() if count > 1))
        return dict(items)

    try:
        json.loads(value, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return []  # pydantic-core read it; the stricter stdlib reader is only a second look
    return repeated[-1] if repeated else []  # the hook sees the top-level object last


def _image_span(value: bytes, image_b64: object) -> tuple[int, int]:
    """Where the image_b64 string's bytes lie in `value`; (0, 0) when not found verbatim
    (then everything is scanned: slower, never wrong)."""
    if not isinstance(image_b64, str) or len(image_b64) < 1024:
        return 0, 0
    key = value.find(_IMAGE_KEY)
    start = value.find(b'"', key + len(_IMAGE_KEY)) + 1 if key >= 0 else 0
    end = start + len(image_b64)
    # The value follows its key: check both ends, so an escaped or repeated one falls back.
    head = image_b64[:64].encode("ascii", "replace")
    if start and value[start : start + len(head)] == head and value[end : end + 1] == b'"':
        return start, end
    return 0, 0


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        name = ".".join(str(p) for p in item["loc"]) or "(record)"
        parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)
