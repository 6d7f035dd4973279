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
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import merge_requests, score_request, split_response

DIM = 3


class ArithmeticModel:
    model_version = "arith-1"
    categories: ClassVar[list[str]] = ["caption_len", "image_mean"]
    image_size = 2
    image_embedding_dim = DIM

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        means = pixels.reshape(len(pixels), -1).mean(axis=1, dtype=np.float32)
        return np.repeat(means[:, None], DIM, axis=1)

    def score(self, captions: list[str], emb: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        lengths = np.array([len(c) for c in captions], dtype=np.float32)
        return np.stack([lengths, np.where(has_image, emb[:, 0], -1.0)], axis=1)


def _request(
    captions: list[str], index: list[int], pixel_values: list[int], cached_values: list[float]
) -> ScoreRequest:
    return ScoreRequest(
        captions=captions,
        image_index=index,
        pixels=np.array(
            [np.full((2, 2, 3), v, np.uint8) for v in pixel_values], dtype=np.uint8
        ).reshape(-1, 2, 2, 3),
        cached_embeddings=np.array([[v] * DIM for v in cached_values], dtype=np.float32).reshape(
            -1, DIM
        ),
    )


def test_merged_scores_equal_scoring_each_request_alone() -> None:
    model = ArithmeticModel()
    requests = [
        _request(["a", "bb", "ccc"], [0, NO_IMAGE, 1], [10, 20], [30.0]),
        _request(["dddd"], [0], [], [40.0]),
        _request(["e", "ff"], [NO_IMAGE, 0], [50], []),
    ]
    merged, rows = merge_requests(requests, DIM)
    assert rows == [3, 1, 2]
    parts = split_response(score_request(model, merged), requests, rows)
    for request, part in zip(requests, parts, strict=True):
        alone = score_request(model, request)
        np.testing.assert_array_equal(part.scores, alone.scores)
        np.testing.assert_array_equal(part.new_embeddings, alone.new_embeddings)


def test_max_ongoing_requests_must_cover_the_batch() -> None:
    with pytest.raises(ValidationError, match="silently caps"):
        ClassifierArgs(max_ongoing_requests=2, batching={"max_batch_size": 4})  # type: ignore[arg-type]
