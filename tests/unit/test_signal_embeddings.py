"""The embeddings as replica signals: the worker and the replica key and read a post alike.

Uses ArithmeticModel (tests/unit/test_serving_batching.py), a tiny stand-in behind the
ModerationModel interface, for the replica side; the starter's embeddings run the shared
contract in test_signal_contract.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import redis

from moderator.cache import FeatureCache
from moderator.cache.features import KEY_PREFIX
from moderator.ingest import DecodedPost
from moderator.schema import Post
from moderator.serving.scoring import model_info, score_request
from moderator.signals import SignalSettings, SignalSubject
from moderator.signals.embeddings import (
    ImageEmbeddingSignal,
    TextEmbeddingSignal,
    embedding_signals,
    model_embeddings,
    text_digest,
)
from tests.unit.test_serving_batching import ArithmeticModel
from workers.features import FeatureLookup


def _post(caption: str, image_text: str, shade: int) -> DecodedPost:
    post = Post(post_id="p", author_id="a", created_at=datetime.now(UTC), caption=caption)
    decoded = DecodedPost(
        post=post, pixels=np.full((2, 2, 3), shade, np.uint8), image_sha256=f"{shade:064x}"
    )
    decoded.signals["ocr"] = {"text": image_text, "boxes": 1, "truncated": False}
    return decoded


def test_the_replica_computes_what_the_worker_asked_for_under_the_signal_keys() -> None:
    model = ArithmeticModel()
    posts = [_post("a caption", "", 10), _post("longer caption here", "", 200)]
    lookup = FeatureLookup(None, model_info(model))
    built = lookup.build(posts)
    response = score_request(model, built.request)
    signals = model_embeddings(model)
    for post, image_key, text_key, image, text in zip(
        posts,
        built.image_hashes,
        built.text_hashes,
        response.new_image_embeddings,
        response.new_text_embeddings,
        strict=True,
    ):
        subject = post.subject()
        assert signals.image.digest(subject) == image_key
        assert signals.text.digest(subject) == text_key
        np.testing.assert_array_equal(signals.image.compute(subject)["vector"], image)
        np.testing.assert_array_equal(signals.text.compute(subject)["vector"], text)
    # The feature cache stores each vector under its signal's key.
    cache = FeatureCache(redis.Redis(), model.model_version, {"image": 4, "text": 2}, ttl_s=60)
    subject = posts[0].subject()
    assert cache.key("image", built.image_hashes[0]) == (
        f"{KEY_PREFIX}:{signals.image.cache_key(subject)}"
    )
    assert (
        cache.key("text", built.text_hashes[0]) == f"{KEY_PREFIX}:{signals.text.cache_key(subject)}"
    )


@pytest.mark.parametrize("reads_image_text", [False, True])
def test_the_text_embedding_reads_the_image_text_only_for_a_model_trained_on_it(
    reads_image_text: bool,
) -> None:
    text = embedding_signals("m", 4, 2, reads_image_text).text
    with_text = SignalSubject(caption="look at this", image_text="kill them all")
    without = SignalSubject(caption="look at this")
    if reads_image_text:
        assert text.model_input(with_text) == "look at this | kill them all"
        assert text.cache_key(with_text) != text.cache_key(without)
    else:
        assert text.model_input(with_text) == "look at this"
        assert text.cache_key(with_text) == text.cache_key(without)
    assert text.digest(without) == text_digest("look at this")
    # A meme without a caption is read by its image text alone, or not at all.
    only_image_text = SignalSubject(image_text="kill them all")
    assert text.applies_to(only_image_text) == reads_image_text


def test_a_new_model_version_is_a_new_key() -> None:
    subject = SignalSubject(image_sha256="ab" * 32, pixels=np.zeros((2, 2, 3), np.uint8))
    first = ImageEmbeddingSignal("m-1", 4).cache_key(subject)
    assert first == f"image_embedding:m-1:{'ab' * 32}"
    assert ImageEmbeddingSignal("m-2", 4).cache_key(subject) != first


def test_an_encoder_of_the_wrong_shape_is_refused_by_name() -> None:
    signal = TextEmbeddingSignal("m", 3, encode=lambda texts: np.zeros((len(texts), 2)))
    with pytest.raises(ValueError, match=r"text_embedding: the encoder returned \(1, 2\)"):
        signal.embed(["words"])
    with pytest.raises(RuntimeError, match="embeddings run on the replica"):
        TextEmbeddingSignal("m", 3).embed(["words"])


def test_embedding_signals_come_from_the_model_not_from_settings() -> None:
    with pytest.raises(TypeError, match="built from the model"):
        ImageEmbeddingSignal.from_settings(SignalSettings())
