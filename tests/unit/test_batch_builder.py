"""Building one model request per micro-batch: cache hits, in-batch reposts, rows without images.

Uses a small in-memory stand-in for FeatureCache (a unit test; the real Redis cache is
exercised in tests/integration).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import numpy as np

from moderator.cache import FeatureCache
from moderator.ingest import DecodedPost
from moderator.schema import Post
from moderator.serving.messages import NO_IMAGE
from workers.batch_builder import build_request

DIM = 4


class DictCache:
    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self.values = values

    def get_many(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        return {h: self.values[h] for h in hashes if h in self.values}


def _decoded(post_id: str, sha: str | None) -> DecodedPost:
    post = Post(post_id=post_id, author_id="a", created_at=datetime.now(UTC), caption=post_id)
    pixels = np.full((8, 8, 3), ord(sha[0]), dtype=np.uint8) if sha else None
    return DecodedPost(post=post, pixels=pixels, image_sha256=sha)


def test_reposts_are_encoded_once_and_cache_hits_travel_as_embeddings() -> None:
    cached = np.arange(DIM, dtype=np.float32)
    cache = cast(FeatureCache, DictCache({"c" * 64: cached}))
    posts = [
        _decoded("p0", "a" * 64),
        _decoded("p1", None),
        _decoded("p2", "a" * 64),
        _decoded("p3", "c" * 64),
        _decoded("p4", "b" * 64),
    ]
    built = build_request(posts, cache, image_size=8, dim=DIM)
    request = built.request
    assert request.captions == ["p0", "p1", "p2", "p3", "p4"]
    assert built.encode_hashes == ["a" * 64, "b" * 64]
    assert request.pixels.shape == (2, 8, 8, 3)
    assert request.image_index == [0, NO_IMAGE, 0, 2, 1]
    np.testing.assert_array_equal(request.cached_embeddings, cached[None, :])
    assert built.cache_hit_rows == {3}


def test_without_cache_or_images() -> None:
    built = build_request([_decoded("p0", None)], None, image_size=8, dim=DIM)
    assert built.request.pixels.shape == (0, 8, 8, 3)
    assert built.request.cached_embeddings.shape == (0, DIM)
    assert built.request.image_index == [NO_IMAGE]
