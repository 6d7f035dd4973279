"""Merging worker requests into one forward pass returns each post's own scores.

Uses a tiny deterministic stand-in model behind the ModerationModel interface
(no torch weights, no Ray): scores are a function of the caption and the image.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from moderator.serving.classifier_deployment import ClassifierArgs
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest
from moderator.serving.recent import RecentEmbeddings
from moderator.serving.scoring import merge_requests, score_request, split_response

DIM = 3
TEXT_DIM = 2


class ArithmeticModel:
    """Image embedding: the pixel mean; text embedding: the caption length. Counts encodes."""

    model_version = "arith-1"
    categories: ClassVar[list[str]] = ["caption_len", "image_mean"]
    image_size = 2
    image_embedding_dim = DIM
    text_embedding_dim = TEXT_DIM

    def __init__(self) -> None:
        self.images_encoded = 0
        self.texts_encoded = 0

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        self.images_encoded += len(pixels)
        means = pixels.reshape(len(pixels), -1).mean(axis=1, dtype=np.float32)
        return np.repeat(means[:, None], DIM, axis=1)

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        self.texts_encoded += len(captions)
        lengths = np.array([len(c) for c in captions], dtype=np.float32)
        return np.repeat(lengths[:, None], TEXT_DIM, axis=1).reshape(-1, TEXT_DIM)

    def score(
        self, text: np.ndarray, has_text: np.ndarray, image: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        return np.stack(
            [np.where(has_text, text[:, 0], -1.0), np.where(has_image, image[:, 0], -1.0)],
            axis=1,
        )


def _request(
    index: list[int],
    pixel_values: list[int],
    cached_values: list[float],
    caption_index: list[int],
    texts: list[str],
    cached_lengths: list[float],
) -> ScoreRequest:
    return ScoreRequest(
        image_index=index,
        pixels=np.array(
            [np.full((2, 2, 3), v, np.uint8) for v in pixel_values], dtype=np.uint8
        ).reshape(-1, 2, 2, 3),
        cached_image_embeddings=np.array(
            [[v] * DIM for v in cached_values], dtype=np.float32
        ).reshape(-1, DIM),
        caption_index=caption_index,
        texts=texts,
        cached_text_embeddings=np.array(
            [[v] * TEXT_DIM for v in cached_lengths], dtype=np.float32
        ).reshape(-1, TEXT_DIM),
    )


def test_merged_scores_equal_scoring_each_request_alone() -> None:
    model = ArithmeticModel()
    requests = [
        # encoded and cached images and captions, a row without an image, a shared caption
        _request([0, NO_IMAGE, 1, 2], [10, 20], [30.0], [0, 2, 1, 0], ["a", "bb"], [7.0]),
        # everything cached
        _request([0], [], [40.0], [0], [], [9.0]),
        # nothing cached, a row without a caption
        _request([NO_IMAGE, 0], [50], [], [NO_TEXT, 0], ["ffff"], []),
        # only cached captions, no images at all
        _request([NO_IMAGE, NO_IMAGE], [], [], [1, 0], [], [3.0, 5.0]),
    ]
    merged, rows = merge_requests(requests, DIM, TEXT_DIM)
    assert rows == [4, 1, 2, 2]
    parts = split_response(score_request(model, merged), requests, rows)
    for request, part in zip(requests, parts, strict=True):
        alone = score_request(model, request)
        np.testing.assert_array_equal(part.scores, alone.scores)
        np.testing.assert_array_equal(part.new_image_embeddings, alone.new_image_embeddings)
        np.testing.assert_array_equal(part.new_text_embeddings, alone.new_text_embeddings)
    np.testing.assert_array_equal(
        parts[0].scores, [[1.0, 10.0], [7.0, -1.0], [2.0, 20.0], [1.0, 30.0]]
    )
    np.testing.assert_array_equal(parts[2].scores, [[-1.0, -1.0], [4.0, 50.0]])
    np.testing.assert_array_equal(parts[3].scores, [[5.0, -1.0], [3.0, -1.0]])


def test_cached_captions_and_images_are_not_encoded() -> None:
    model = ArithmeticModel()
    response = score_request(model, _request([0, 0], [], [1.0], [0, 1], [], [2.0, 6.0]))
    assert (model.images_encoded, model.texts_encoded) == (0, 0)
    assert response.new_text_embeddings.shape == (0, TEXT_DIM)
    np.testing.assert_array_equal(response.scores, [[2.0, 1.0], [6.0, 1.0]])


def test_rows_must_agree() -> None:
    with pytest.raises(ValueError, match="caption_index"):
        _request([NO_IMAGE], [], [], [NO_TEXT, NO_TEXT], [], [])


def test_max_ongoing_requests_must_cover_the_batch() -> None:
    with pytest.raises(ValidationError, match="silently caps"):
        ClassifierArgs(max_ongoing_requests=2, batching={"max_batch_size": 4})  # type: ignore[arg-type]


def _keyed(pixel_values: list[int], texts: list[str]) -> ScoreRequest:
    rows = max(len(pixel_values), len(texts))
    request = _request(
        [i if i < len(pixel_values) else NO_IMAGE for i in range(rows)],
        pixel_values,
        [],
        [i if i < len(texts) else NO_TEXT for i in range(rows)],
        texts,
        [],
    )
    request.image_keys = [f"sha-{v}" for v in pixel_values]
    return request


def test_replica_reuses_embeddings_of_in_flight_reposts() -> None:
    """A repost whose original is still in flight (not yet in Redis) is not encoded again."""
    model = ArithmeticModel()
    recent = RecentEmbeddings(capacity=8)
    first = score_request(model, _keyed([10, 20], ["a", "bb"]), recent)
    assert (model.images_encoded, model.texts_encoded) == (2, 2)
    # The next batch repeats one image and one caption, and repeats a new one within itself.
    requests = [_keyed([20, 30], ["bb", "ccc"]), _keyed([30], ["ccc"])]
    merged, rows = merge_requests(requests, DIM, TEXT_DIM)
    assert merged.image_keys == ["sha-20", "sha-30", "sha-30"]
    parts = split_response(score_request(model, merged, recent), requests, rows)
    assert (model.images_encoded, model.texts_encoded) == (3, 3)
    assert recent.reused == 4
    fresh = ArithmeticModel()
    for request, part in zip(requests, parts, strict=True):
        alone = score_request(fresh, request)  # no memory: encodes everything
        np.testing.assert_array_equal(part.scores, alone.scores)
        np.testing.assert_array_equal(part.new_image_embeddings, alone.new_image_embeddings)
        np.testing.assert_array_equal(part.new_text_embeddings, alone.new_text_embeddings)
    np.testing.assert_array_equal(first.new_image_embeddings[1], parts[0].new_image_embeddings[0])


def test_replica_memory_is_bounded_and_optional() -> None:
    model = ArithmeticModel()
    recent = RecentEmbeddings(capacity=2)
    for value in (1, 2, 3):
        score_request(model, _keyed([value], []), recent)
    score_request(model, _keyed([1], []), recent)  # evicted (least recent): encoded again
    assert model.images_encoded == 4
    score_request(model, _keyed([3], []), recent)
    assert model.images_encoded == 4
    unkeyed = _request([0], [3], [], [NO_TEXT], [], [])
    score_request(model, unkeyed, recent)  # no keys: nothing to look up, encoded
    assert model.images_encoded == 5
    off = RecentEmbeddings(capacity=0)
    score_request(model, _keyed([3, 3], []), off)  # still deduplicated within the batch
    score_request(model, _keyed([3], []), off)
    assert model.images_encoded == 7
