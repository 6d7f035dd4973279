"""Building one model request per micro-batch: cache hits, in-batch reposts, rows without images
or captions, and the caption normalisation the text cache keys on.

Uses a small in-memory stand-in for FeatureCache (a unit test; the real Redis cache is
exercised in tests/integration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import cast

import numpy as np
import pytest
import redis

from moderator.cache import FeatureCache, FeatureKind
from moderator.cache.features import KEY_PREFIX
from moderator.ingest import DecodedPost, normalise_caption
from moderator.schema import Post
from moderator.serving.messages import NO_IMAGE, NO_TEXT
from moderator.serving.scoring import score_request
from moderator.signals.embeddings import EmbeddingSignals, embedding_signals, text_digest
from tests.unit.test_serving_batching import ArithmeticModel
from workers.features import build_request

DIM = 4
TEXT_DIM = 2


def _embeddings(image_dim: int = DIM, text_dim: int = TEXT_DIM) -> EmbeddingSignals:
    return embedding_signals("m-1", image_dim, text_dim, reads_image_text=False)


class DictCache:
    def __init__(self, values: dict[FeatureKind, dict[str, np.ndarray]]) -> None:
        self.values = values
        self.calls = 0

    def get_many(
        self, wanted: Mapping[FeatureKind, Sequence[str]]
    ) -> dict[FeatureKind, dict[str, np.ndarray]]:
        self.calls += 1
        stored = self.values
        return {
            k: {d: stored[k][d] for d in ds if d in stored.get(k, {})} for k, ds in wanted.items()
        }


def _decoded(post_id: str, sha: str | None, caption: str | None = None) -> DecodedPost:
    post = Post(
        post_id=post_id,
        author_id="a",
        created_at=datetime.now(UTC),
        caption=post_id if caption is None else caption,
    )
    pixels = np.full((8, 8, 3), ord(sha[0]), dtype=np.uint8) if sha else None
    return DecodedPost(post=post, pixels=pixels, image_sha256=sha)


def test_reposts_are_encoded_once_and_cache_hits_travel_as_embeddings() -> None:
    cached = np.arange(DIM, dtype=np.float32)
    cache = DictCache({"image": {"c" * 64: cached}})
    posts = [
        _decoded("p0", "a" * 64),
        _decoded("p1", None),
        _decoded("p2", "a" * 64),
        _decoded("p3", "c" * 64),
        _decoded("p4", "b" * 64),
    ]
    built = build_request(posts, cast(FeatureCache, cache), _embeddings(), 8)
    request = built.request
    assert cache.calls == 1  # one lookup for both kinds
    assert request.texts == ["p0", "p1", "p2", "p3", "p4"]
    assert request.caption_index == [0, 1, 2, 3, 4]
    assert built.text_hashes == [text_digest(f"p{i}") for i in range(5)]
    assert built.image_hashes == ["a" * 64, "b" * 64]
    assert request.pixels.shape == (2, 8, 8, 3)
    assert request.image_index == [0, NO_IMAGE, 0, 2, 1]
    np.testing.assert_array_equal(request.cached_image_embeddings, cached[None, :])
    assert request.cached_text_embeddings.shape == (0, TEXT_DIM)
    assert built.cache_hits == [[], [], [], ["image"], []]


def test_captions_are_normalised_deduplicated_and_served_from_the_cache() -> None:
    spam = normalise_caption("buy   now ")
    cached = np.array([1.0, 2.0], dtype=np.float32)
    cache = DictCache({"text": {text_digest(spam): cached}})
    posts = [
        _decoded("p0", None, "hello\tworld"),
        _decoded("p1", None, "buy now"),
        _decoded("p2", None, "  hello world "),
        _decoded("p3", None, "   "),
        _decoded("p4", None, ""),
        _decoded("p5", None, "buy\nnow"),
    ]
    built = build_request(posts, cast(FeatureCache, cache), _embeddings(), 8)
    request = built.request
    assert request.texts == ["hello world"]  # encoded once, in its normalised form
    assert built.text_hashes == [text_digest("hello world")]
    assert request.caption_index == [0, 1, 0, NO_TEXT, NO_TEXT, 1]
    np.testing.assert_array_equal(request.cached_text_embeddings, cached[None, :])
    assert built.cache_hits == [[], ["text"], [], [], [], ["text"]]


def test_a_batch_whose_captions_and_images_are_all_cached_runs_no_encoder() -> None:
    image = np.full(3, 7.0, dtype=np.float32)
    cache = DictCache(
        {
            "image": {"a" * 64: image},
            "text": {text_digest("spam wave"): np.array([9.0, 9.0], np.float32)},
        }
    )
    posts = [_decoded(f"p{i}", "a" * 64, "spam  wave") for i in range(3)]
    built = build_request(posts, cast(FeatureCache, cache), _embeddings(3), 2)
    assert built.request.texts == [] and len(built.request.pixels) == 0
    model = ArithmeticModel()
    response = score_request(model, built.request)
    assert (model.images_encoded, model.texts_encoded) == (0, 0)
    np.testing.assert_array_equal(response.scores, [[9.0, 7.0]] * 3)
    assert built.cache_hits == [["image", "text"]] * 3


def test_without_cache_or_images() -> None:
    built = build_request([_decoded("p0", None, "")], None, _embeddings(), 8)
    assert built.request.pixels.shape == (0, 8, 8, 3)
    assert built.request.cached_image_embeddings.shape == (0, DIM)
    assert built.request.cached_text_embeddings.shape == (0, TEXT_DIM)
    assert built.request.image_index == [NO_IMAGE]
    assert built.request.caption_index == [NO_TEXT]
    assert built.cache_hits == [[]]


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  Hello \t\n world  ", "Hello world"),
        ("cafe\u0301", "caf\u00e9"),  # NFD → NFC
        ("caf\u00e9", "caf\u00e9"),
        ("a\u00a0\u2003b", "a b"),  # Unicode spaces collapse too
        (" \n\t ", ""),
        ("Case Stays", "Case Stays"),
    ],
)
def test_normalise_caption(raw: str, normalised: str) -> None:
    assert normalise_caption(raw) == normalised


def test_text_keys_hash_the_normalised_caption_and_name_the_model_version() -> None:
    digest = text_digest(normalise_caption("cafe\u0301  au lait"))
    assert digest == hashlib.sha256("caf\u00e9 au lait".encode()).hexdigest()
    cache = FeatureCache(redis.Redis(), "m-1", {"image": 4, "text": 2}, ttl_s=60)
    assert cache.key("text", digest) == f"{KEY_PREFIX}:text_embedding:m-1:{digest}"
    assert cache.key("image", "a" * 64) == f"{KEY_PREFIX}:image_embedding:m-1:{'a' * 64}"
