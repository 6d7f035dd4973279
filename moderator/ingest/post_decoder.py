"""Record bytes → validated Post (+ decoded image), or a typed reason for the DLQ."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import numpy as np
import pydantic_core
from pydantic import ValidationError

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest.image import decode_image
from moderator.ingest.url_fetch import ImageFetcher
from moderator.schema.post import POST_SCHEMA_VERSION, Post


@dataclass(frozen=True, slots=True)
class DecodedPost:
    post: Post
    pixels: np.ndarray | None
    image_sha256: str | None


def decode_post(
    value: bytes | None,
    limits: DecodeLimits,
    image_size: int,
    fetcher: ImageFetcher | None = None,
) -> DecodedPost:
    """Validate one record value; raises InvalidPostError with the reason code."""
    return load_image(parse_post(value, limits), limits, image_size, fetcher)


def load_image(
    post: Post, limits: DecodeLimits, image_size: int, fetcher: ImageFetcher | None = None
) -> DecodedPost:
    """Decode a parsed post's image (fetching image_url posts when `fetcher` is given)."""
    if post.image_url is not None:
        if fetcher is None:
            raise InvalidPostError(
                ReasonCode.IMAGE_URL_DISABLED, "image_url given but URL fetching is disabled"
            )
        image_bytes = fetcher.fetch(post.image_url)
    elif post.image_b64 is None:
        return DecodedPost(post=post, pixels=None, image_sha256=None)
    else:
        image_bytes = _base64_image(post.image_b64, limits)
    pixels = decode_image(image_bytes, limits, image_size)
    return DecodedPost(
        post=post, pixels=pixels, image_sha256=hashlib.sha256(image_bytes).hexdigest()
    )


def _base64_image(image_b64: str, limits: DecodeLimits) -> bytes:
    decoded_size = len(image_b64) * 3 // 4
    if decoded_size > limits.max_image_bytes:
        # Refuse before decoding: no point allocating the bytes of an image we won't read.
        raise InvalidPostError(
            ReasonCode.IMAGE_TOO_LARGE,
            f"image is ~{decoded_size} bytes, limit {limits.max_image_bytes}",
        )
    try:
        return base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPostError(ReasonCode.BAD_BASE64, f"image_b64 is not base64: {exc}") from exc


def parse_post(value: bytes | None, limits: DecodeLimits) -> Post:
    """Bytes → Post without touching the image."""
    if value is None:
        raise InvalidPostError(ReasonCode.INVALID_JSON, "record has no value (tombstone)")
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
    try:
        return Post.model_validate(raw)
    except ValidationError as exc:
        raise InvalidPostError(ReasonCode.SCHEMA_VIOLATION, _summarise(exc)) from exc


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        field = ".".join(str(p) for p in item["loc"]) or "(record)"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)
