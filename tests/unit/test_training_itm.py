"""Image-text matching (moderator/training/itm.py, ImageBERT's ITM) and its served score.

Pairs are built without fixed points; a head trained on generated embeddings whose image
"describes" its caption tells shuffled pairs from real ones; a checkpoint with an ITM head
serves `image_text_mismatch` after the categories (0 without a caption or an image), scored
through score_request like the categories; the version covers the ITM weights; the options
that cannot go with it are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from moderator.model import load_model
from moderator.model.fusion_config import ITM_CATEGORY
from moderator.model.fusion_heads import HeadConfig, build_head
from moderator.model.fusion_model import FusionModerationModel, save_fusion_checkpoint
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest
from moderator.serving.scoring import score_request
from moderator.training.embedding_cache import Embeddings
from moderator.training.itm import derangement, matching_pairs, mismatch_scores, train_itm
from moderator.training.trainer import TrainConfig
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from tests.unit.test_model_fusion_checkpoint import write_checkpoint

HEAD = HeadConfig(hidden_dim=32, projection_dim=8)


def described(rows: int, seed: int) -> Embeddings:
    """Captions [rows, 16] and images that describe them (a fixed linear map plus noise)."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(rows, 16)).astype(np.float32)
    mapping = np.random.default_rng(99).normal(size=(16, 24)).astype(np.float32)
    image = (text @ mapping + 0.3 * rng.normal(size=(rows, 24))).astype(np.float32)
    has_image = np.ones(rows, dtype=bool)
    has_image[::10] = False
    return Embeddings(text, image, has_image)


def test_derangement_moves_every_index() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 101):
        order = derangement(n, rng)
        assert sorted(order.tolist()) == list(range(n))
        assert not (order == np.arange(n)).any()


def test_pairs_are_matches_then_mismatches_of_rows_with_an_image() -> None:
    embeddings = described(20, 0)
    pairs, labels = matching_pairs(embeddings, seed=0)
    rows = np.flatnonzero(embeddings.has_image)
    assert labels[:, 0].tolist() == [0.0] * len(rows) + [1.0] * len(rows)
    np.testing.assert_array_equal(pairs.text[: len(rows)], pairs.text[len(rows) :])
    np.testing.assert_array_equal(pairs.image[: len(rows)], embeddings.image[rows])
    assert not (pairs.image[len(rows) :] == embeddings.image[rows]).all(axis=1).any()


def test_learns_to_tell_shuffled_pairs_from_real_ones() -> None:
    config = TrainConfig(head=HEAD, epochs=60, batch_size=64, seed=0)
    head, _, val_auroc = train_itm(described(600, 1), described(200, 2), config)
    assert val_auroc >= 0.95
    test = described(100, 3)
    real = mismatch_scores(head, test)
    assert (real[~test.has_image] == 0).all()
    pairs, labels = matching_pairs(test, seed=5)
    shuffled = mismatch_scores(head, pairs)[labels[:, 0] == 1]
    assert np.median(shuffled) > np.median(real[test.has_image]) + 0.3


def test_served_after_the_categories_and_zero_without_a_pair(
    tiny_clip_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    plain = load_model(write_checkpoint(tmp_path / "plain", tiny_clip_dir))
    assert isinstance(plain, FusionModerationModel)
    torch.manual_seed(1)
    itm = build_head(HEAD, plain.text_embedding_dim, plain.image_embedding_dim, 1).eval()
    directory = tmp_path / "with-itm"
    from moderator.model.fusion_model import load_head

    head = load_head(tmp_path / "plain", plain.config)
    save_fusion_checkpoint(directory, plain.config, head, itm=itm)
    model = load_model(directory)
    assert model.categories == [*plain.categories, ITM_CATEGORY]
    assert model.model_version != plain.model_version  # the ITM weights are in the version
    rng = np.random.default_rng(0)
    size = model.image_size
    pixels = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    request = ScoreRequest(
        [0, 1, NO_IMAGE, 1],
        pixels,
        np.zeros((0, model.image_embedding_dim), np.float32),
        [0, NO_TEXT, 1, 1],
        ["a caption", "another"],
        np.zeros((0, model.text_embedding_dim), np.float32),
    )
    scores = score_request(model, request).scores
    np.testing.assert_allclose(scores[:, :-1], score_request(plain, request).scores, atol=1e-6)
    assert scores[1, -1] == 0 and scores[2, -1] == 0  # no caption; no image
    assert 0 < scores[0, -1] < 1 and 0 < scores[3, -1] < 1
    expected = torch.sigmoid(
        itm(
            torch.from_numpy(model.embed_texts(["a caption"])),
            torch.from_numpy(model.embed_images(pixels[:1])),
            torch.tensor([True]),
        )
    )
    assert scores[0, -1] == pytest.approx(float(expected), abs=1e-5)


def test_refused_with_stage_2_or_one_modality() -> None:
    with pytest.raises(ValidationError, match="itm needs"):
        TrainConfig(itm=True, unfreeze=True)
    with pytest.raises(ValidationError, match="itm needs"):
        TrainConfig(itm=True, modalities="text")
