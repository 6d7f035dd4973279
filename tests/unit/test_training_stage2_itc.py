"""Image-text contrastive loss in stage 2 (`--stage2-itc-weight`, moderator/training/finetune.py).

Stage 2 with ITC aligns what the fine-tuned encoders compute: after it, the contrastive loss of
the training pairs (measured on the final encoders and head) is lower than after the same stage 2
without it, and the encoders end up elsewhere. Off, stage 2 is what it was (the recorded
reference in tests/unit/test_training_device.py covers that). The option is validated and
recorded in the checkpoint only when on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone
from moderator.model.fusion_heads import CrossFusionHead, HeadConfig
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.training.embedding_cache import compute_embeddings
from moderator.training.finetune import finetune_encoders
from moderator.training.itc import itc_loss
from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
from moderator.training.trainer import TrainConfig, train_head
from tests.unit.test_model_backbones import build_tiny_clip
from tests.unit.test_training_pipeline import train


def _contrastive_after_stage2(
    root: Path, clip: Path, weight: float, seed: int = 1
) -> tuple[float, np.ndarray]:
    """(ITC loss of the training pairs after stage 2 at `weight`, the final image embeddings)."""
    data = write_synthetic_dataset(root / "data", rows=32, seed=seed)
    dataset = read_dataset(data, DatasetSpec(categories=[CATEGORY]))
    train_rows, val = dataset.subset(np.arange(24)), dataset.subset(np.arange(24, 32))
    backbone = load_backbone(BackboneSpec(type="clip", id=str(clip)))
    config = TrainConfig(
        head=HeadConfig(hidden_dim=16, projection_dim=4),
        epochs=3,
        unfreeze=True,
        stage2_epochs=3,
        stage2_batch_size=12,
        encoder_learning_rate=1e-3,
        stage2_itc_weight=weight,
    )
    head, history = train_head(
        compute_embeddings(backbone, train_rows), train_rows.labels(),
        compute_embeddings(backbone, val), val.labels(), config,
    )  # fmt: skip
    finetune_encoders(backbone, head, train_rows, val, config, history)
    after = compute_embeddings(backbone, train_rows)
    assert isinstance(head, CrossFusionHead)
    with torch.no_grad():
        text, image = head.unimodal_projections(
            torch.from_numpy(after.text),
            torch.from_numpy(after.image),
            torch.from_numpy(after.has_image),
        )
        loss = itc_loss(text, image, torch.from_numpy(after.has_image), torch.tensor(0.07))
    return float(loss), after.image


def test_stage2_itc_aligns_the_fine_tuned_encoders(tmp_path: Path) -> None:
    clip = build_tiny_clip(tmp_path / "clip")
    plain, plain_images = _contrastive_after_stage2(tmp_path / "plain", clip, 0.0)
    aligned, aligned_images = _contrastive_after_stage2(tmp_path / "itc", clip, 1.0)
    assert aligned < plain - 0.5, (aligned, plain)
    # The gradient reached the image encoder: its embeddings differ from the plain run's.
    assert not np.allclose(aligned_images, plain_images, atol=1e-4)


def test_stage2_itc_weight_is_validated() -> None:
    with pytest.raises(ValidationError, match="needs unfreeze"):
        TrainConfig(stage2_itc_weight=0.1)
    with pytest.raises(ValidationError, match="needs the cross head"):
        TrainConfig(unfreeze=True, stage2_itc_weight=0.1, head=HeadConfig(type="late"))
    with pytest.raises(ValidationError, match="modalities=both"):
        TrainConfig(unfreeze=True, stage2_itc_weight=0.1, modalities="text")
    with pytest.raises(ValidationError):
        TrainConfig(unfreeze=True, stage2_itc_weight=-1.0)


def test_stage2_itc_is_recorded_only_when_on(tmp_path: Path) -> None:
    clip = build_tiny_clip(tmp_path / "clip")
    data = write_synthetic_dataset(tmp_path / "data", rows=24, seed=1)
    backbone = BackboneSpec(type="clip", id=str(clip))
    train(
        data, tmp_path / "on", tmp_path / "cache", backbone,
        unfreeze=True, stage2_epochs=1, epochs=2, stage2_itc_weight=0.3,
    )  # fmt: skip
    training = json.loads((tmp_path / "on" / "config.json").read_text())["training"]
    assert training["stage2_itc"] == {"weight": 0.3}
    train(
        data, tmp_path / "off", tmp_path / "cache", backbone,
        unfreeze=True, stage2_epochs=1, epochs=2,
    )  # fmt: skip
    off = json.loads((tmp_path / "off" / "config.json").read_text())["training"]
    assert "stage2_itc" not in off
