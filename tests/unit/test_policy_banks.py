"""Hash banks: list parsing, PDQ nearest-neighbour search, and matching posts end to end."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from moderator.config import DecodeLimits
from moderator.ingest import decode_post, load_image, parse_post
from moderator.policy.banks import (
    HashBank,
    HashListError,
    ImageSignals,
    PdqIndex,
    parse_hash_list,
)
from moderator.policy.loader import load_policy
from moderator.policy.service import PolicyService
from moderator.schema import Action
from moderator.signals.hashes import pdq_from_pixels

REPO = Path(__file__).resolve().parents[2]


def pattern_image(seed: int, size: int = 512) -> np.ndarray:
    """The synthetic 'known-bad' images whose PDQ hashes policies/banks ships (seeds 1-3)."""
    y, x = np.mgrid[0:size, 0:size] / size
    f = 1.0 + seed % 7
    g = 2.0 + (seed * 3) % 5
    r = 0.5 + 0.5 * np.sin(2 * np.pi * (f * x + 0.3 * seed))
    gch = 0.5 + 0.5 * np.sin(2 * np.pi * (g * y + 0.1 * seed))
    b = 0.5 + 0.5 * np.sin(2 * np.pi * (f * x * y + g * (x - y)))
    return (np.stack([r, gch, b], axis=-1) * 255).astype(np.uint8)


def test_hash_lists_accept_notes_signal_columns_and_headers() -> None:
    text = "hash,note\n# comment\n" + "ab" * 16 + ",a note\nmd5 " + "CD" * 16 + "\n"
    assert parse_hash_list(text, "md5") == ["ab" * 16, "cd" * 16]
    with pytest.raises(HashListError, match=r"x\.txt:2: not a md5 hash"):
        parse_hash_list("ab" * 16 + "\nnot-a-hash\n", "md5", "x.txt")


def _flip(digest: bytes, bits: int, rng: np.random.Generator) -> bytes:
    unpacked = np.unpackbits(np.frombuffer(digest, np.uint8)).copy()
    unpacked[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked).tobytes()


@pytest.mark.parametrize("size", [50, 20_000])
def test_pdq_index_agrees_with_brute_force(size: int) -> None:
    rng = np.random.default_rng(size)
    hashes = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    index = PdqIndex(hashes)
    brute = hashes.astype(np.uint8)
    for trial in range(40):
        query = _flip(hashes[trial * (size // 40)].tobytes(), int(rng.integers(0, 45)), rng)
        expected = int(np.unpackbits(brute ^ np.frombuffer(query, np.uint8), axis=1).sum(1).min())
        for threshold in (31, 40):
            found = index.nearest(query, threshold)
            assert found == (expected if expected <= threshold else None)


def test_pdq_of_resized_pixels_matches_the_shipped_bank() -> None:
    bank = load_policy(REPO / "policies" / "default.yaml").banks.banks["known_bad_pdq"]
    for seed in (1, 2, 3):
        small = np.asarray(Image.fromarray(pattern_image(seed)).resize((224, 224)))
        digest, quality = pdq_from_pixels(small)
        distance = bank.match(ImageSignals(pdq=digest, pdq_quality=quality))
        assert distance is not None and distance <= 8
    other, quality = pdq_from_pixels(pattern_image(5))
    assert bank.match(ImageSignals(pdq=other, pdq_quality=quality)) is None


def test_quality_floor_and_exact_banks() -> None:
    digest, _ = pdq_from_pixels(pattern_image(1))
    bank = HashBank.from_digests("b", "pdq", [digest.hex()], quality_floor=50)
    assert bank.match(ImageSignals(pdq=digest, pdq_quality=100)) == 0
    assert bank.match(ImageSignals(pdq=digest, pdq_quality=10)) is None
    md5 = HashBank.from_digests("m", "md5", ["0" * 32])
    assert md5.match(ImageSignals(md5="0" * 32)) == 0
    assert md5.match(ImageSignals(md5="1" * 32)) is None


def _record(seed: int | None, caption: str = "") -> bytes:
    post: dict[str, object] = {
        "post_id": f"p{seed}",
        "author_id": "a1",
        "created_at": "2026-06-01T00:00:00Z",
        "caption": caption,
    }
    if seed is not None:
        buffer = io.BytesIO()
        Image.fromarray(pattern_image(seed)).save(buffer, format="PNG")
        post["image_b64"] = base64.b64encode(buffer.getvalue()).decode()
    return orjson.dumps(post)


def test_worker_path_matches_banks_from_decoded_posts() -> None:
    service = PolicyService(load_policy(REPO / "policies" / "default.yaml"))
    limits = DecodeLimits()
    known = decode_post(_record(2), limits, 224)
    result = service.decide_post(known, {"hate": 0.0}, timestamp_ms=1_780_000_000_000)
    assert result.action is Action.BLOCK
    assert result.rules_fired == ["bank.known_bad_pdq"]
    assert result.policy_version == "default@4"
    unknown = decode_post(_record(5, "free spins"), limits, 224)
    assert service.decide_post(unknown, {"gambling": 0.5}, 1_780_000_000_000).action is (
        Action.REVIEW
    )
    text_only = decode_post(_record(None, "hello"), limits, 224)
    assert service.decide_post(text_only, {}, None).action is Action.ALLOW


def _md5_banked_png(tmp_path: Path, seed: int) -> tuple[bytes, PolicyService]:
    """A PNG, and a policy that blocks it through an MD5 bank listing its file's digest."""
    buffer = io.BytesIO()
    Image.fromarray(pattern_image(seed)).save(buffer, format="PNG")
    (tmp_path / "bad.md5.txt").write_text(hashlib.md5(buffer.getvalue()).hexdigest() + "\n")
    (tmp_path / "p.yaml").write_text(
        "name: p\nversion: '1'\ncategories: [hate]\n"
        "hash_banks: {bad: {kind: md5, file: bad.md5.txt}}\n"
        "rules:\n- {id: bad, when: 'bank_match(\"bad\")', action: block}\n"
    )
    return buffer.getvalue(), PolicyService(load_policy(tmp_path / "p.yaml"))


def test_md5_banks_hash_the_original_bytes(tmp_path: Path) -> None:
    png, service = _md5_banked_png(tmp_path, 4)
    record = orjson.loads(_record(None))
    record["image_b64"] = base64.b64encode(png).decode()
    decoded = decode_post(orjson.dumps(record), DecodeLimits(), 224)
    assert service.decide_post(decoded, {}, None).action is Action.BLOCK


class _FixedFetcher:
    """A small fake behind ImageFetcher's interface: hands back fixed bytes for any URL (the
    real fetcher, with its network rules, is tested in tests/integration/test_url_images.py)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def fetch(self, url: str) -> bytes:
        return self.data


def test_md5_banks_match_images_fetched_from_image_url(tmp_path: Path) -> None:
    # The digests are computed once, while decoding, from the bytes as received: before, the
    # policy base64-decoded image_b64 again for MD5, so a fetched image never matched.
    png, service = _md5_banked_png(tmp_path, 5)
    record = orjson.loads(_record(None))
    record["image_url"] = "https://images.example.com/a.png"
    parsed = parse_post(orjson.dumps(record), DecodeLimits())
    fetcher = _FixedFetcher(png)
    decoded = load_image(parsed, DecodeLimits(), 224, fetcher)  # type: ignore[arg-type]
    assert decoded.signals["md5"]["hash"] == hashlib.md5(png).hexdigest()
    assert service.decide_post(decoded, {}, None).action is Action.BLOCK
