"""Retrieval-guided contrastive learning (moderator/training/rgcl.py) in stage 1.

Off (weight 0) gives exactly the results recorded before RGCL existed; the retrieval picks the
right pseudo-gold positive and hard negatives on a hand-made index; the fused representation
comes with forward's own logits; training with RGCL on generated two-modality embeddings (the
label needs both) still learns, and is seeded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from moderator.model.fusion_heads import HeadConfig, HeadType, build_head
from moderator.training.embedding_cache import Embeddings
from moderator.training.metrics import mean_auroc
from moderator.training.rgcl import build_index, label_groups, retrieve, rgcl_loss
from moderator.training.trainer import TrainConfig, predict, train_head
from tests.data import record_fp32_reference as reference
from tests.unit.test_training_pipeline import cli_app

TINY = HeadConfig(hidden_dim=16, projection_dim=4)


def test_off_gives_the_results_recorded_before_rgcl() -> None:
    """Switched off explicitly, a run gives the numbers recorded before rgcl existed."""
    with np.load(reference.OUT) as recorded:
        for key, value in reference.stage1_outputs(rgcl_weight=0.0).items():
            np.testing.assert_allclose(value, recorded[key], rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("kind", ["late", "concat", "cross"])
def test_logits_and_features_are_forwards(kind: HeadType) -> None:
    torch.manual_seed(0)
    head = build_head(HeadConfig(type=kind, hidden_dim=16, projection_dim=4), 6, 5, 2)
    generator = torch.Generator().manual_seed(1)
    text, image = torch.randn(10, 6, generator=generator), torch.randn(10, 5, generator=generator)
    has_image = torch.arange(10) % 3 != 0
    for training in (False, True):  # with dropout: the same masks from the same seed
        head.train(training)
        torch.manual_seed(2)
        expected = head(text, image, has_image)
        torch.manual_seed(2)
        logits, features = head.logits_and_features(text, image, has_image)
        assert torch.equal(logits, expected)
        width = 32 if kind == "late" else 16
        assert features.shape == (10, width)
    if kind == "late":  # the image half is zero without an image
        assert torch.all(features[~has_image, 16:] == 0)


def test_retrieval_picks_the_nearest_same_and_other_label_rows() -> None:
    angles = torch.tensor([0.0, 10.0, 30.0, 50.0, 20.0, 40.0, 180.0]) * torch.pi / 180
    index = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    labels = torch.tensor([[0.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0]])
    groups = label_groups(labels)
    assert groups.tolist() == [0, 0, 0, 0, 1, 1, 1]
    rows = torch.tensor([0, 4, 3])
    positive, has_positive, negative, valid = retrieve(index[rows], rows, index, groups, 2)
    # Row 0 (0°): nearest label-0 other than itself is row 1 (10°); nearest label-1: 4 (20°),
    # then 5 (40°). Row 4 (20°): label-1 → 5 (40°); label-0 → 1 (10°) and 2 (30°), tied at 10°.
    # Row 3 (50°): label-0 → 2 (30°); label-1 → 5 (40°), then 4 (20°).
    assert positive.tolist() == [1, 5, 2]
    assert has_positive.all()
    assert negative[0].tolist() == [4, 5]
    assert sorted(negative[1].tolist()) == [1, 2]
    assert negative[2].tolist() == [5, 4]
    assert valid.all()
    # More negatives asked than exist: the extra ones are marked invalid.
    _, _, negative, valid = retrieve(index[rows], rows, index, groups, 6)
    assert valid.sum(dim=1).tolist() == [3, 4, 3]


def test_retrieval_without_a_same_label_neighbour() -> None:
    index = torch.eye(3)
    groups = label_groups(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    rows = torch.tensor([0, 1])
    positive, has_positive, _, _ = retrieve(index[rows], rows, index, groups, 1)
    assert has_positive.tolist() == [False, True]
    assert positive[1] == 2
    features = index[rows].clone().requires_grad_(True)
    loss = rgcl_loss(features, rows, index, groups, 1, 0.1)
    loss.backward()
    assert features.grad is not None and torch.all(features.grad[0] == 0)  # row 0 ignored


def test_loss_is_low_near_the_positive_and_high_near_the_negatives() -> None:
    index = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    groups = torch.tensor([0, 1, 0, 1])
    rows = torch.tensor([0])
    near = rgcl_loss(torch.tensor([[1.0, 0.01]]), rows, index, groups, 2, 0.1)
    far = rgcl_loss(torch.tensor([[0.01, 1.0]]), rows, index, groups, 2, 0.1)
    assert float(near) < 0.01 < 5 < float(far)


def test_build_index_is_unit_length_and_keeps_the_mode() -> None:
    torch.manual_seed(0)
    head = build_head(TINY, 6, 5, 1)
    head.train()
    index = build_index(head, torch.randn(7, 6), torch.randn(7, 5), torch.ones(7, dtype=torch.bool))
    assert head.training
    torch.testing.assert_close(index.norm(dim=1), torch.ones(7))


def xor_embeddings(rows: int, seed: int) -> tuple[Embeddings, np.ndarray]:
    """Caption and image embeddings whose label is the XOR of one sign from each side."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(rows, 12)).astype(np.float32)
    image = rng.normal(size=(rows, 10)).astype(np.float32)
    labels = ((text[:, 0] > 0) != (image[:, 0] > 0)).astype(np.float32)[:, None]
    return Embeddings(text, image, np.ones(rows, dtype=bool)), labels


def fit(**options: Any) -> tuple[float, np.ndarray]:
    train, train_labels = xor_embeddings(480, 0)
    val, val_labels = xor_embeddings(160, 1)
    config = TrainConfig(
        head=HeadConfig(hidden_dim=32, projection_dim=8), epochs=40, batch_size=64, **options
    )
    head, _ = train_head(train, train_labels, val, val_labels, config)
    scores = predict(head, val, "both")
    return mean_auroc(val_labels, scores), scores


def test_training_with_rgcl_learns_and_is_seeded() -> None:
    auroc, scores = fit(rgcl_weight=0.5, rgcl_negatives=4, rgcl_temperature=0.1)
    assert auroc >= 0.9
    _, same = fit(rgcl_weight=0.5, rgcl_negatives=4, rgcl_temperature=0.1)
    assert np.array_equal(scores, same)
    _, without = fit()
    assert not np.array_equal(scores, without)  # the loss does change training


def test_cli_validates_the_rgcl_options(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        cli_app(),
        ["train", str(tmp_path / "none.jsonl"), "--out", str(tmp_path), "--rgcl-weight", "-1"],
    )
    assert result.exit_code == 2
    assert "rgcl_weight" in result.output
