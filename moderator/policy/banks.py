"""Hash banks: known images by PDQ (near-duplicate) or MD5/SHA-256 (exact).

A bank is a hash-list file (ThreatExchange / HMA style): one hash per line as
hex, optionally followed by a comma or whitespace and a note; ``#`` comments;
a leading ``pdq,`` / ``md5,`` signal-type column and a header row are
accepted. PDQ banks match within a Hamming-distance threshold (default 31, the
ThreatExchange recommendation) and ignore images whose PDQ quality is below a
floor (default 50: flat or tiny images hash unreliably).

Lookup in a large PDQ bank uses multi-index hashing: the 256 bits are 16
chunks of 16 bits, and a hash within distance t of the query agrees with it to
within floor(t/16) bits on at least one chunk (pigeonhole). Each chunk has a
bucket table, so a query probes 16 x 17 buckets (t <= 31) and checks only
those candidates with a vectorised popcount; thresholds of 48 and above fall
back to a full scan. See moderator/benchmark/policy_bench.py --bank for the 1M-hash figure.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np

from moderator.signals import SignalOutput
from moderator.signals.hashes import PdqSignal

logger = logging.getLogger(__name__)

BankKind = Literal["pdq", "md5", "sha256"]
HEX_LENGTH: dict[str, int] = {"pdq": 64, "md5": 32, "sha256": 64}
_SIGNAL_TYPES = frozenset({"pdq", "md5", "sha256", "photo_md5", "pdq_hash"})
_MIH_MIN_SIZE = 4096
_CHUNKS = 16


class HashListError(ValueError):
    """A hash-list file cannot be read; the message names file and line."""


def parse_hash_list(text: str, kind: BankKind, source: str = "<text>") -> list[str]:
    """Lower-case hex digests from a hash-list text, in file order, validated."""
    width = HEX_LENGTH[kind]
    digests: list[str] = []
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in line.replace(",", " ").replace("\t", " ").split(" ") if f]
        if fields[0].lower() in _SIGNAL_TYPES and len(fields) > 1:
            fields = fields[1:]
        digest = fields[0].lower()
        valid = len(digest) == width and _is_hex(digest)
        if not valid and first and not _is_hex(digest):
            first = False
            continue  # a header row
        first = False
        if not valid:
            raise HashListError(f"{source}:{number}: not a {kind} hash ({width} hex digits)")
        digests.append(digest)
    return digests


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Set bits per row of an (n, 4) uint64 array."""
    if hasattr(np, "bitwise_count"):
        counts: np.ndarray = np.bitwise_count(words).sum(axis=1, dtype=np.int32)
        return counts
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
    summed: np.ndarray = table[words.view(np.uint8)].reshape(len(words), -1).sum(axis=1)
    return summed


class PdqIndex:
    """Nearest-neighbour search by Hamming distance over 256-bit hashes."""

    def __init__(self, hashes: np.ndarray) -> None:
        raw = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 32)
        self.size = len(raw)
        self._words = raw.view(np.uint64).reshape(-1, 4)
        self._offsets: np.ndarray | None = None
        self._ids: np.ndarray | None = None
        if self.size >= _MIH_MIN_SIZE:
            self._build_chunk_tables(raw.view(np.uint16).reshape(-1, _CHUNKS))

    @classmethod
    def from_hex(cls, digests: Iterable[str]) -> PdqIndex:
        joined = "".join(digests)
        return cls(np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(-1, 32))

    def _build_chunk_tables(self, chunks: np.ndarray) -> None:
        order = np.argsort(chunks, axis=0, kind="stable").astype(np.int32)
        offsets = np.empty((_CHUNKS, 65537), dtype=np.int64)
        values = np.arange(65537)
        for j in range(_CHUNKS):
            offsets[j] = np.searchsorted(chunks[order[:, j], j], values)
        self._offsets = offsets
        self._ids = np.ascontiguousarray(order.T)

    def nearest(self, query: bytes, threshold: int) -> int | None:
        """Distance to the nearest hash within `threshold`, or None."""
        if self.size == 0:
            return None
        qwords = np.frombuffer(query, dtype=np.uint64)
        radius = threshold // _CHUNKS
        if self._offsets is not None and radius <= 2:
            candidates = self._candidates(np.frombuffer(query, dtype=np.uint16), radius)
            if candidates.size == 0:
                return None
            distances = _popcount_rows(self._words[candidates] ^ qwords)
        else:
            distances = _popcount_rows(self._words ^ qwords)
        best = int(distances.min())
        return best if best <= threshold else None

    def _candidates(self, qchunks: np.ndarray, radius: int) -> np.ndarray:
        offsets, ids = self._offsets, self._ids
        if offsets is None or ids is None:  # pragma: no cover - only called with tables
            raise RuntimeError("no chunk tables")
        probes = (qchunks[:, None].astype(np.int64) ^ _flip_masks(radius)[None, :]).astype(np.int64)
        rows = np.arange(_CHUNKS)[:, None]
        starts = offsets[rows, probes].ravel()
        ends = offsets[rows, probes + 1].ravel()
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.empty(0, dtype=np.int32)
        # Flat positions into ids (chunk-major): each probe's run [start, end) of its row.
        row_base = np.repeat(np.arange(_CHUNKS) * self.size, probes.shape[1])
        run_starts = np.repeat(starts + row_base - np.cumsum(lengths) + lengths, lengths)
        positions = run_starts + np.arange(total)
        # Duplicates (a hash close on several chunks) only cost a repeated popcount.
        return ids.ravel()[positions]


_MASKS: dict[int, np.ndarray] = {}


def _flip_masks(radius: int) -> np.ndarray:
    """XOR masks of every 16-bit pattern with at most `radius` bits set."""
    masks = _MASKS.get(radius)
    if masks is None:
        values = [0]
        for count in range(1, radius + 1):
            values += [sum(1 << b for b in bits) for bits in combinations(range(16), count)]
        masks = _MASKS[radius] = np.array(values, dtype=np.int64)
    return masks


@dataclass(frozen=True)
class ImageSignals:
    """What banks compare: the hashes of one post's image."""

    pdq: bytes | None = None
    pdq_quality: int = 0
    md5: str | None = None
    sha256: str | None = None
    frames: tuple[ImageSignals, ...] = ()
    """The hashes of each further frame of an animation, album or video (#14): a bank
    matches the post when it matches any of them."""


class HashBank:
    def __init__(
        self,
        name: str,
        kind: BankKind,
        data: frozenset[str] | PdqIndex,
        threshold: int = 31,
        quality_floor: int = 50,
    ) -> None:
        self.name = name
        self.kind = kind
        self.threshold = threshold
        self.quality_floor = quality_floor
        self._index = data if isinstance(data, PdqIndex) else None
        self._exact = data if isinstance(data, frozenset) else frozenset()
        self.size = data.size if isinstance(data, PdqIndex) else len(data)

    @classmethod
    def from_digests(
        cls,
        name: str,
        kind: BankKind,
        digests: Iterable[str],
        threshold: int = 31,
        quality_floor: int = 50,
    ) -> HashBank:
        return cls(name, kind, _bank_data(kind, list(digests)), threshold, quality_floor)

    def match(self, signals: ImageSignals) -> int | None:
        """Distance of the nearest match (0 for exact banks), or None."""
        if self._index is not None:
            if signals.pdq is None or signals.pdq_quality < self.quality_floor:
                return None
            return self._index.nearest(signals.pdq, self.threshold)
        digest = signals.md5 if self.kind == "md5" else signals.sha256
        return 0 if digest is not None and digest in self._exact else None

    def __repr__(self) -> str:
        return f"HashBank({self.name!r}, {self.kind}, {self.size} hashes)"


def _bank_data(kind: BankKind, digests: list[str]) -> frozenset[str] | PdqIndex:
    return PdqIndex.from_hex(digests) if kind == "pdq" else frozenset(digests)


class HashBanks:
    """A policy's banks; `match` gives the `hash_matches` of a PolicyInput."""

    def __init__(self, banks: Mapping[str, HashBank]) -> None:
        self.banks = dict(banks)
        kinds = {bank.kind for bank in self.banks.values()}
        self.needs_pdq = "pdq" in kinds
        self.needs_md5 = "md5" in kinds
        self.needs_sha256 = "sha256" in kinds

    def __bool__(self) -> bool:
        return bool(self.banks)

    def match(self, signals: ImageSignals) -> dict[str, int]:
        found = {}
        for name, bank in self.banks.items():
            distance = bank.match(signals)
            for frame in signals.frames:
                at = bank.match(frame)
                if at is not None and (distance is None or at < distance):
                    distance = at  # the nearest over every frame
            if distance is not None:
                found[name] = distance
        return found

    def signals(
        self, digests: Mapping[str, SignalOutput], pixels: np.ndarray | None
    ) -> ImageSignals:
        """What the banks compare, from the digests computed while decoding (ingest). PDQ is
        computed here from the pixels only if decoding skipped it (a PDQ bank arrived with a
        policy reload while the batch was in flight)."""
        pdq = digests.get("pdq")
        if self.needs_pdq and pdq is None and pixels is not None:
            pdq = _PDQ.run_on_pixels(pixels)
        md5, sha256 = digests.get("md5"), digests.get("sha256")
        frames = digests.get("frame_hashes")  # moderator.ingest.media.FRAME_HASHES
        return ImageSignals(
            pdq=bytes.fromhex(str(pdq["hash"])) if pdq and pdq["hash"] else None,
            pdq_quality=int(pdq["quality"]) if pdq else 0,
            md5=_hex(md5),
            sha256=_hex(sha256),
            frames=tuple(_frame_signals(frame) for frame in frames["frames"]) if frames else (),
        )


_PDQ = PdqSignal()


def _frame_signals(hashes: Mapping[str, Any]) -> ImageSignals:
    """One frame's hashes as ingest stored them (pdq/quality, sha256/md5 of a file)."""
    pdq = hashes.get("hash")
    return ImageSignals(
        pdq=bytes.fromhex(str(pdq)) if pdq else None,
        pdq_quality=int(hashes.get("quality", 0)),
        md5=hashes.get("md5"),
        sha256=hashes.get("sha256"),
    )


def _hex(digest: SignalOutput | None) -> str | None:
    return str(digest["hash"]) or None if digest is not None else None


_CACHE: dict[tuple[str, str, int, int], frozenset[str] | PdqIndex] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 32


def load_bank(
    name: str, kind: BankKind, path: Path, threshold: int = 31, quality_floor: int = 50
) -> HashBank:
    """Load a bank file; an unchanged file (path, size, mtime) is parsed once across reloads."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise HashListError(f"{path}: cannot read hash list: {exc.strerror}") from exc
    key = (str(path.resolve()), kind, stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        data = _CACHE.get(key)
    if data is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HashListError(f"{path}: cannot read hash list: {exc}") from exc
        data = _bank_data(kind, parse_hash_list(text, kind, str(path)))
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.clear()
            _CACHE[key] = data
    bank = HashBank(name, kind, data, threshold, quality_floor)
    logger.info("hash bank %s: %d %s hashes from %s", name, bank.size, kind, path)
    return bank
