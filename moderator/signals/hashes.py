"""Digests of the image, computed once while the post is decoded (``ingest`` signals).

sha256 is always computed (the feature and signal caches are keyed by it); MD5 and PDQ only
when a hash bank or another consumer asks for them. MD5 and sha256 read the image file's
bytes as received, inline or fetched from image_url alike; PDQ reads the decoded pixels
(moderator.policy.banks explains why the resized image is good enough).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from moderator.signals.base import FieldType, Signal, SignalOutput, SignalSubject


class _FileDigest(Signal):
    """A hex digest of the image file's bytes: ``signals.<name>.hash``."""

    version: ClassVar[str] = "1"
    needs = frozenset({"image_bytes"})
    runs_in = "ingest"
    cost = "trivial"
    fields: ClassVar[Mapping[str, FieldType]] = {"hash": "string"}
    empty: ClassVar[SignalOutput] = {"hash": ""}

    @staticmethod
    def digest(data: bytes) -> str:
        raise NotImplementedError

    def compute(self, subject: SignalSubject) -> SignalOutput:
        assert subject.image_bytes is not None
        return {"hash": self.digest(subject.image_bytes)}


class Sha256Signal(_FileDigest):
    """``signals.sha256.hash``: hex sha256 of the image file (the caches' key)."""

    name: ClassVar[str] = "sha256"

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


class Md5Signal(_FileDigest):
    """``signals.md5.hash``: hex MD5 of the image file (exact-match banks from other systems)."""

    name: ClassVar[str] = "md5"

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()


class PdqSignal(Signal):
    """``signals.pdq.hash`` (64 hex digits) and ``.quality`` (0-100): Meta's perceptual hash."""

    name: ClassVar[str] = "pdq"
    version: ClassVar[str] = "1"
    needs = frozenset({"pixels"})
    runs_in = "ingest"
    cost = "moderate"
    fields: ClassVar[Mapping[str, FieldType]] = {"hash": "string", "quality": "int"}
    empty: ClassVar[SignalOutput] = {"hash": "", "quality": 0}

    def compute(self, subject: SignalSubject) -> SignalOutput:
        assert subject.pixels is not None
        return self.run_on_pixels(subject.pixels)

    @staticmethod
    def run_on_pixels(pixels: np.ndarray) -> SignalOutput:
        digest, quality = pdq_from_pixels(pixels)
        return {"hash": digest.hex(), "quality": quality}


def pdq_from_pixels(pixels: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash (32 bytes, the hex order of ThreatExchange) and quality of an RGB uint8 image."""
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(pixels, dtype=np.uint8))
    return np.packbits(bits.astype(np.uint8)).tobytes(), int(quality)
