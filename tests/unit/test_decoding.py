"""Image and post decoding: caps, allowlist, corrupt data, and the generated sample stream."""

from __future__ import annotations

import base64
import io

import numpy as np
import orjson
import pytest
from PIL import Image

from moderator.config import DecodeLimits
from moderator.demo.samples import sample_stream
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest import decode_image, decode_post
from tests.hostile_corpus import HEIC_SAMPLE

LIMITS = DecodeLimits()


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_allowed_formats_decode_to_square_rgb(fmt: str) -> None:
    image = Image.new("RGB", (320, 200), (200, 30, 30))
    pixels = decode_image(_encode(image, fmt), LIMITS, 224)
    assert pixels.shape == (224, 224, 3)
    assert pixels.dtype == np.uint8
    assert pixels[112, 112, 0] > 150  # still red


def test_grayscale_and_alpha_are_converted_to_rgb() -> None:
    for mode in ("L", "RGBA", "P"):
        pixels = decode_image(_encode(Image.new(mode, (40, 40)), "PNG"), LIMITS, 32)
        assert pixels.shape == (32, 32, 3)


def test_format_outside_allowlist_is_rejected() -> None:
    with pytest.raises(InvalidPostError) as caught:
        decode_image(_encode(Image.new("RGB", (8, 8)), "BMP"), LIMITS, 32)
    assert caught.value.reason is ReasonCode.IMAGE_FORMAT_NOT_ALLOWED


def test_pixel_cap_is_checked_before_decoding() -> None:
    limits = DecodeLimits(max_image_pixels=100 * 100)
    with pytest.raises(InvalidPostError) as caught:
        decode_image(_encode(Image.new("RGB", (101, 100)), "PNG"), limits, 32)
    assert caught.value.reason is ReasonCode.IMAGE_TOO_MANY_PIXELS


def test_byte_cap() -> None:
    limits = DecodeLimits(max_image_bytes=1024)
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InvalidPostError) as caught:
        decode_image(_encode(noisy, "PNG"), limits, 32)
    assert caught.value.reason is ReasonCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"hello"])
def test_corrupt_or_non_image_bytes(data: bytes) -> None:
    with pytest.raises(InvalidPostError) as caught:
        decode_image(data, LIMITS, 32)
    assert caught.value.reason is ReasonCode.IMAGE_CORRUPT


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.new("RGB", (256, 256), (1, 2, 3)), "JPEG")
    with pytest.raises(InvalidPostError) as caught:
        decode_image(data[: len(data) // 3], LIMITS, 32)
    assert caught.value.reason is ReasonCode.IMAGE_CORRUPT


def test_post_with_image_gets_pixels_and_content_hash() -> None:
    image = _encode(Image.new("RGB", (50, 50), (0, 255, 0)), "PNG")
    value = orjson.dumps(
        {
            "post_id": "p",
            "author_id": "a",
            "created_at": "2026-11-01T00:00:00Z",
            "image_b64": base64.b64encode(image).decode(),
        }
    )
    decoded = decode_post(value, LIMITS, 64)
    assert decoded.pixels is not None and decoded.pixels.shape == (64, 64, 3)
    assert decoded.image_sha256 is not None and len(decoded.image_sha256) == 64


def test_bad_base64_and_disabled_urls_are_problems_of_a_decided_post() -> None:
    base = {"post_id": "p", "author_id": "a", "created_at": "2026-11-01T00:00:00Z"}
    decoded = decode_post(orjson.dumps({**base, "image_b64": "%%%"}), LIMITS, 32)
    assert list(decoded.problems) == [ReasonCode.BAD_BASE64]
    assert decoded.pixels is None and decoded.image_unreadable
    value = orjson.dumps({**base, "image_url": "https://x.test/a.png"})
    decoded = decode_post(value, LIMITS, 32)
    assert list(decoded.problems) == [ReasonCode.IMAGE_URL_DISABLED]
    strict = LIMITS.model_copy(update={"dead_letter_problems": [ReasonCode.IMAGE_URL_DISABLED]})
    with pytest.raises(InvalidPostError) as caught:
        decode_post(value, strict, 32)
    assert caught.value.reason is ReasonCode.IMAGE_URL_DISABLED


def test_heic_and_avif_decode_within_the_same_pixel_cap() -> None:
    avif = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 20, 20)).save(avif, format="AVIF")
    for data, fmt in ((HEIC_SAMPLE.read_bytes(), "HEIF"), (avif.getvalue(), "AVIF")):
        pixels = decode_image(data, LIMITS, 32)
        assert pixels.shape == (32, 32, 3)
        assert fmt in LIMITS.allowed_image_formats
        small = LIMITS.model_copy(update={"max_image_pixels": 64 * 48 - 1})
        with pytest.raises(InvalidPostError) as caught:
            decode_image(data, small, 32)
        assert caught.value.reason is ReasonCode.IMAGE_TOO_MANY_PIXELS
    # The HEIC sample is a red rectangle on green: its pixels come out, not a blank.
    pixels = decode_image(HEIC_SAMPLE.read_bytes(), LIMITS, 64)
    assert pixels[20, 20, 0] > 150 and pixels[2, 2, 1] > 150


def test_sample_stream_is_reproducible_and_labels_its_malformed_records() -> None:
    first = sample_stream(400, seed=3, malformed_share=0.1)
    assert first == sample_stream(400, seed=3, malformed_share=0.1)
    malformed = [s for s in first if not s.valid]
    assert len({s.expected_reason for s in malformed}) >= 3
    assert len({s.expected_problems for s in first if s.expected_problems}) >= 5
    for sample in first:
        try:
            decoded = decode_post(sample.value, LIMITS, 32)
        except InvalidPostError as exc:
            assert exc.reason is sample.expected_reason
        else:
            assert sample.valid
            assert tuple(decoded.problems) == sample.expected_problems
