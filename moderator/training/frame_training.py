"""Stage 1 on posts with several frames (#14): the head, and with `--frame-pooling attention` a
gated frame attention (moderator/model/frame_attention.py), trained on the pooled score.

Each batch is a padded [B, K] table of a post's frame rows with a mask: the head scores every
frame row (frame embedding + the post's caption), the scores are pooled per post exactly as
the worker pools them (moderator.frame_pooling: max, mean, or Σ softmax(logit) · score), and
the loss is the binary cross-entropy of the pooled score. With max or mean only the head is
trained (nothing new is saved); with attention both are, jointly, and the checkpoint carries
the attention module. Early stopping, seeding and class weighting are stage 1's
(moderator/training/trainer.py); still-only data never comes here (run.py keeps its path).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from moderator.frame_pooling import FramePoolingMethod
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone, preprocessing_for
from moderator.model.checkpoint_files import checkpoint_version, read_config
from moderator.model.frame_attention import FrameAttention, FrameAttentionConfig, parameter_count
from moderator.model.fusion_config import FusionConfig
from moderator.model.fusion_heads import FusionHead, build_head
from moderator.model.fusion_model import apply_modalities, save_fusion_checkpoint
from moderator.training.dataset import DatasetSpec
from moderator.training.device import training_device
from moderator.training.errors import TrainingDataError
from moderator.training.frames import FrameEmbeddings, frame_embeddings
from moderator.training.metrics import mean_auroc
from moderator.training.report import choose_thresholds, finish_report
from moderator.training.splits import Splits, provenance
from moderator.training.trainer import AUROC_TIE, History, TrainConfig, pos_weight

logger = logging.getLogger(__name__)

PROBABILITY_FLOOR = 1e-6  # keeps log() of a pooled probability finite


def needs_frame_training(splits: Splits, pooling: FramePoolingMethod) -> bool:
    """Whether any row has a video or frame folder; attention pooling without one is refused
    (a post with one frame gives the attention nothing to weigh)."""
    examples = [*splits.dataset.examples, *(splits.val_file.examples if splits.val_file else [])]
    if any(e.has_frames for e in examples):
        return True
    if pooling == "attention":
        raise TrainingDataError(
            "--frame-pooling attention needs rows with a video or a frame folder "
            "(fields video / frames); every row here is one still image or a caption"
        )
    return False


def refuse_unsupported(config: TrainConfig, pooling: FramePoolingMethod) -> None:
    """Options not combined with frame rows yet are refused, never silently ignored."""
    refused = {
        "--unfreeze": config.unfreeze,
        "--itm": config.itm,
        "--rgcl-weight": config.rgcl_weight > 0,
        "--itc-weight": config.itc_weight > 0,
        "--knn-vote-weight": config.knn_vote_weight > 0,
        "--distill-alpha": config.distill_alpha > 0,
    }
    given = [flag for flag, on in refused.items() if on]
    if given:
        raise TrainingDataError(
            f"rows with a video or frame folder do not combine with {', '.join(given)} yet "
            "(docs/video.md, 'Trained attention pooling')"
        )
    if pooling == "attention" and config.modalities == "text":
        raise TrainingDataError("--frame-pooling attention weighs frames: it needs images")


class RowTensors:
    """One split's row table on the device, after the head's modalities, and its post index."""

    def __init__(
        self, embeddings: FrameEmbeddings, config: TrainConfig, device: torch.device
    ) -> None:
        text, image, has_image = apply_modalities(
            embeddings.text, embeddings.image, embeddings.has_image, config.modalities
        )
        self.text = torch.from_numpy(text).to(device)
        self.image = torch.from_numpy(image).to(device)
        self.has_image = torch.from_numpy(has_image).to(device)
        self.index = torch.from_numpy(embeddings.index).to(device)
        self.raw_image = torch.from_numpy(embeddings.image).to(device)
        self.raw_has_image = torch.from_numpy(embeddings.has_image).to(device)


def pooled_probabilities(
    head: FusionHead,
    attention: FrameAttention | None,
    rows: RowTensors,
    posts: torch.Tensor,
    pooling: FramePoolingMethod,
) -> torch.Tensor:
    """Pooled sigmoid scores [B, C] of the posts `posts`, as the worker pools served scores."""
    index = rows.index[posts]  # [B, K]
    valid = index >= 0
    flat = index[valid]
    scores = torch.sigmoid(head(rows.text[flat], rows.image[flat], rows.has_image[flat]))
    table = scores.new_zeros((*index.shape, scores.shape[1]))
    table[valid] = scores
    if pooling == "max":  # scores are ≥ 0, so the zero padding never wins
        return table.max(dim=1).values
    if pooling == "mean":
        return table.sum(dim=1) / valid.sum(dim=1, keepdim=True).to(table.dtype)
    assert attention is not None
    # The replica computes a logit for every row with an image (0.0 without one; such a
    # post has that one row, so its weight is 1 either way).
    row_logits = attention(rows.raw_image[flat]) * rows.raw_has_image[flat].to(table.dtype)
    logits = table.new_full(index.shape, -math.inf)
    logits[valid] = row_logits
    weights = torch.softmax(logits, dim=1)
    return (weights.unsqueeze(-1) * table).sum(dim=1)


def _loss(probabilities: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    p = probabilities.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    loss = -(weight * labels * torch.log(p) + (1 - labels) * torch.log(1 - p))
    return loss.mean()


def predict_pooled(
    head: FusionHead,
    attention: FrameAttention | None,
    embeddings: FrameEmbeddings,
    config: TrainConfig,
    pooling: FramePoolingMethod,
) -> np.ndarray:
    """Pooled scores [N, C] on the CPU, in eval mode."""
    head.eval()
    if attention is not None:
        attention.eval()
    rows = RowTensors(embeddings, config, torch.device("cpu"))
    with torch.inference_mode():
        posts = torch.arange(len(embeddings.index))
        return pooled_probabilities(head, attention, rows, posts, pooling).numpy()


def train_pooled(
    train: FrameEmbeddings,
    train_labels: np.ndarray,
    val: FrameEmbeddings,
    val_labels: np.ndarray,
    config: TrainConfig,
    pooling: FramePoolingMethod,
    progress: Progress | None = None,
) -> tuple[FusionHead, FrameAttention | None, History]:
    """Stage 1 through the pooling: the best validation epoch's head (and attention), on the
    CPU. The loop is train_head's (seed, AdamW, early stopping on mean AUROC, ties by loss)."""
    device = training_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rows, val_rows = RowTensors(train, config, device), RowTensors(val, config, device)
    labels = torch.from_numpy(train_labels.astype(np.float32)).to(device)
    val_targets = torch.from_numpy(val_labels.astype(np.float32)).to(device)
    head = build_head(config.head, rows.text.shape[1], rows.image.shape[1], labels.shape[1])
    head = head.to(device)
    used = torch.unique(rows.index[rows.index >= 0])  # the rows of this split's posts
    head.set_input_statistics(rows.text[used], rows.image[used], rows.has_image[used])
    modules: list[torch.nn.Module] = [head]
    attention = None
    if pooling == "attention":
        attention = FrameAttention(FrameAttentionConfig(), rows.image.shape[1]).to(device)
        attention.set_input_statistics(rows.raw_image[used][rows.raw_has_image[used]])
        modules.append(attention)
    optimizer = torch.optim.AdamW(
        [p for m in modules for p in m.parameters()],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    weight = pos_weight(train_labels, config.class_weighting).to(device)
    history = History()
    best = [copy.deepcopy(m.state_dict()) for m in modules]
    best_score, best_loss = -math.inf, math.inf
    task = progress.add_task(f"stage 1: {pooling}", total=config.epochs) if progress else None
    val_posts = torch.arange(len(val.index), device=device)
    for epoch in range(config.epochs):
        for module in modules:
            module.train()
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            posts = order[start : start + config.batch_size].to(device)
            pooled = pooled_probabilities(head, attention, rows, posts, pooling)
            loss = _loss(pooled, labels[posts], weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(posts)
        for module in modules:
            module.eval()
        with torch.inference_mode():
            val_pooled = pooled_probabilities(head, attention, val_rows, val_posts, pooling)
            val_loss = float(_loss(val_pooled, val_targets, weight))
        score = mean_auroc(val_labels, val_pooled.cpu().numpy())
        score = -val_loss if math.isnan(score) else score
        history.train_loss.append(total / len(labels))
        history.val_loss.append(val_loss)
        history.val_auroc.append(score)
        if progress and task is not None:
            progress.update(task, advance=1, description=f"stage 1: {pooling} (val {score:.3f})")
        tie = score >= best_score - AUROC_TIE and val_loss < best_loss
        if score > best_score + AUROC_TIE or tie:
            best = [copy.deepcopy(m.state_dict()) for m in modules]
            history.best_epoch = epoch
            best_score, best_loss = max(score, best_score), val_loss
        elif epoch - history.best_epoch >= config.patience:
            logger.info("early stop at epoch %d, best %d", epoch, history.best_epoch)
            break
    for module, state in zip(modules, best, strict=True):
        module.load_state_dict(state)
        module.to("cpu").eval()
    return head, attention, history


def run_frame_training(
    data: Path,
    spec: DatasetSpec,
    backbone_spec: BackboneSpec,
    config: TrainConfig,
    out: Path,
    splits: Splits,
    pooling: FramePoolingMethod,
    report_dir: Path | None,
    cache_dir: Path | None,
    progress: Progress | None,
    image_size: int | None,
) -> dict[str, Any]:
    """run_training for data with videos or frame folders: embeddings per frame, stage 1
    through the pooling, the checkpoint (with the attention module for attention) and the
    report, as run_training writes them."""
    refuse_unsupported(config, pooling)
    device = training_device(config.device)
    backbone = load_backbone(backbone_spec, preprocessing_for(backbone_spec, image_size))
    backbone.to(device)
    whole = frame_embeddings(backbone, splits.dataset, cache_dir, progress)
    train_emb = whole.subset(splits.parts["train"])
    if splits.val_file is not None:
        val_emb = frame_embeddings(backbone, splits.val_file, cache_dir, progress)
    else:
        val_emb = whole.subset(splits.parts["val"])
    train_labels, val_labels = splits.train.labels(), splits.val.labels()
    head, attention, history = train_pooled(
        train_emb, train_labels, val_emb, val_labels, config, pooling, progress
    )
    val_scores = predict_pooled(head, attention, val_emb, config, pooling)
    categories = splits.train.categories
    thresholds, suggested = choose_thresholds(
        val_labels, val_scores, categories, config.target_precision
    )
    training = provenance(data, splits, config, history.best_epoch, len(history.val_auroc))
    training["frame_pooling"] = pooling
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
        thresholds=thresholds,
        training=training,
    )
    save_fusion_checkpoint(out, fusion_config, head, frame_attention=attention)
    saved = read_config(FusionConfig, out)
    report: dict[str, Any] = {
        "model_version": checkpoint_version(saved.name, out, saved),
        "checkpoint": str(out),
        "backbone": backbone_spec.model_dump(),
        "head": config.head.model_dump(),
        "modalities": config.modalities,
        "device": str(device),
        "stage2_amp": None,
        "frame_pooling": pooling,
        "frames_per_post": {
            "mean": float(whole.frames.mean()),
            "max": int(whole.frames.max()),
        },
        "frame_attention_parameters": parameter_count(attention) if attention else 0,
    }

    def test_scores(_test: Any) -> np.ndarray:
        return predict_pooled(head, attention, whole.subset(splits.parts["test"]), config, pooling)

    return finish_report(
        report, splits, val_scores, test_scores, thresholds, suggested, config, history,
        report_dir or out / "report",
    )  # fmt: skip
