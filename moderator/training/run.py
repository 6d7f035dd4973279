"""`moderator train`: data → checkpoint + report, a plain function, so tests and notebooks call it
without typer. The data and its splits are in splits.py, the report in report.py, evaluation
(`moderator eval`) in evaluate.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from moderator.errors import ConfigError
from moderator.frame_pooling import FramePoolingMethod
from moderator.model.backbone_base import BackboneEncoder, BackboneSpec
from moderator.model.backbones import load_backbone, preprocessing_for
from moderator.model.checkpoint_files import checkpoint_version, read_config
from moderator.model.fusion_config import FusionConfig
from moderator.model.fusion_heads import FusionHead
from moderator.model.fusion_model import save_fusion_checkpoint
from moderator.model.neighbour_vote import NeighbourVote
from moderator.model.object_tags import ImageTagger, NoImageClassifierError
from moderator.training.dataset import (
    Dataset,
    DatasetSpec,
)
from moderator.training.device import amp_dtype, training_device
from moderator.training.embedding_cache import Embeddings, cached_embeddings, compute_embeddings
from moderator.training.finetune import finetune_encoders
from moderator.training.frame_training import needs_frame_training, run_frame_training
from moderator.training.metrics import auroc
from moderator.training.neighbours import build_neighbours, vote_scores
from moderator.training.report import choose_thresholds, finish_report
from moderator.training.splits import Splits, effective_modalities, load_splits, provenance
from moderator.training.trainer import TrainConfig, predict, train_head

logger = logging.getLogger(__name__)


def run_training(
    data: Path,
    spec: DatasetSpec,
    backbone_spec: BackboneSpec,
    config: TrainConfig,
    out: Path,
    report_dir: Path | None = None,
    val_data: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    image_size: int | None = None,
    frame_pooling: FramePoolingMethod = "max",
) -> dict[str, Any]:
    """Train a checkpoint into `out`; write report.json, roc.png and training.png to report_dir.

    image_size overrides the offline backbone's input size (224); HF models fix their own.
    config.device is checked first, so a device torch cannot see fails before any work.
    Rows with a video or frame folder train through frame_pooling (frame_training.py).
    """
    device = training_device(config.device)
    config = config.model_copy(update={"device": str(device)})
    splits = load_splits(data, spec, val_data, config, limit)
    if needs_frame_training(splits, frame_pooling):  # rows with videos or frame folders (#14)
        if config.object_tags:
            raise ConfigError("--object-tags: not with video or frame rows (not built)")
        return run_frame_training(
            data, spec, backbone_spec, config, out, splits, frame_pooling, report_dir,
            cache_dir, progress, image_size,
        )  # fmt: skip
    config = effective_modalities(config, splits.train)
    categories = splits.train.categories
    backbone = load_backbone(backbone_spec, preprocessing_for(backbone_spec, image_size))
    backbone.to(device)  # the frozen-encoder embeddings are most of stage 1's work
    tagger = _tagger(backbone, config)
    # One cache entry for the whole file (after --limit), shared by every split and by eval.
    whole = cached_embeddings(backbone, splits.dataset, cache_dir, progress, tagger)
    train_emb = whole.subset(splits.parts["train"])
    if splits.val_file is not None:
        val_emb = cached_embeddings(backbone, splits.val_file, cache_dir, progress, tagger)
    else:
        val_emb = whole.subset(splits.parts["val"])
    head, history = train_head(
        train_emb, splits.train.labels(), val_emb, splits.val.labels(), config, progress
    )
    if config.unfreeze:
        finetune_encoders(backbone, head, splits.train, splits.val, config, history, progress)
        backbone.to(device)  # for the embeddings below; the checkpoint saves CPU copies
        val_emb = compute_embeddings(backbone, splits.val, progress)
    neighbours = _neighbours(head, train_emb, splits, config, backbone, progress)
    val_scores = (
        predict(head, val_emb, config.modalities)
        if neighbours is None
        else vote_scores(head, neighbours, val_emb, config.modalities)
    )
    itm_head, itm_report = _matching_head(train_emb, val_emb, splits, config, progress)
    thresholds, suggested = choose_thresholds(
        splits.val.labels(), val_scores, categories, config.target_precision
    )
    fusion_config = FusionConfig(
        name=config.name,
        categories=categories,
        backbone=backbone_spec,
        text_embedding_dim=backbone.text_dim,
        image_embedding_dim=backbone.image_dim,
        preprocessing=backbone.preprocessing,
        head=config.head,
        modalities=config.modalities,
        reads_image_text=spec.text_source == "image_text",
        object_tags=config.object_tags or None,
        thresholds=thresholds,
        training=provenance(data, splits, config, history.best_epoch, len(history.val_auroc)),
    )
    save_fusion_checkpoint(
        out,
        fusion_config,
        head,
        backbone if config.unfreeze else None,
        itm_head,
        neighbours=neighbours,
    )
    saved = read_config(FusionConfig, out)
    report: dict[str, Any] = {
        "model_version": checkpoint_version(saved.name, out, saved),
        "checkpoint": str(out),
        "backbone": backbone_spec.model_dump(),
        "head": config.head.model_dump(),
        "modalities": config.modalities,
        "device": str(device),
        "stage2_amp": _amp_name(device, config) if config.unfreeze else None,
    }
    if itm_report is not None:
        report["itm"] = itm_report

    def test_scores(test: Dataset) -> np.ndarray:
        embeddings = (
            compute_embeddings(backbone, test, progress)
            if config.unfreeze
            else whole.subset(splits.parts["test"])
        )
        if neighbours is not None:
            return vote_scores(head, neighbours, embeddings, config.modalities)
        return predict(head, embeddings, config.modalities)

    return finish_report(
        report, splits, val_scores, test_scores, thresholds, suggested, config, history,
        report_dir or out / "report",
    )  # fmt: skip


def _matching_head(
    train: Embeddings,
    val: Embeddings,
    splits: Splits,
    config: TrainConfig,
    progress: Progress | None,
) -> tuple[FusionHead | None, dict[str, Any] | None]:
    """With --itm: the image-text matching head, and how well it tells mismatched pairs from
    matched ones on validation (and how its score on the real pairs ranks each category)."""
    if not config.itm:
        return None, None
    from moderator.training.itm import mismatch_scores, train_itm

    head, history, val_auroc = train_itm(train, val, config, progress)
    labels = splits.val.labels()
    mismatch = mismatch_scores(head, val)
    rows = val.has_image
    return head, {
        "val_auroc_mismatch_vs_match": val_auroc,
        "best_epoch": history.best_epoch,
        "category_auroc_of_mismatch_score": {
            category: auroc(labels[rows, c], mismatch[rows])
            for c, category in enumerate(splits.val.categories)
        },
    }


def _neighbours(
    head: FusionHead,
    train: Embeddings,
    splits: Splits,
    config: TrainConfig,
    backbone: BackboneEncoder,
    progress: Progress | None,
) -> NeighbourVote | None:
    """With --knn-vote-weight: the training rows as the kNN vote's examples (after stage 2,
    re-embedded by the fine-tuned encoders, as serving will embed posts)."""
    if not config.knn_vote_weight:
        return None
    if config.unfreeze:
        train = compute_embeddings(backbone, splits.train, progress)
    return build_neighbours(
        head, train, splits.train.labels(), config.modalities,
        config.knn_k, config.knn_temperature, config.knn_vote_weight,
    )  # fmt: skip


def _tagger(backbone: BackboneEncoder, config: TrainConfig) -> ImageTagger | None:
    """With --object-tags K: the backbone's ImageNet classifier naming each image's top K."""
    if not config.object_tags:
        return None
    try:
        return ImageTagger.of(backbone, config.object_tags)
    except NoImageClassifierError as e:
        raise ConfigError(f"--object-tags: {e}") from e


def _amp_name(device: torch.device, config: TrainConfig) -> str | None:
    dtype = amp_dtype(device, config.amp)
    return None if dtype is None else str(dtype).removeprefix("torch.")
