"""Stage 1: train a fusion head on cached frozen-encoder embeddings. Stage 2 (opt-in): fine-tune
the encoders and the head end to end, meant for a GPU.

Seeded: the same data, configuration and seed give the same weights (on the same machine).
Early stopping watches the validation set's mean AUROC; the best epoch's weights are kept.
With `rgcl_weight` > 0, stage 1 adds retrieval-guided contrastive learning (moderator/training/
rgcl.py); with `itc_weight` > 0, an image-text contrastive loss on the cross head's text and
image projections (moderator/training/itc.py, ALBEF's ITC); with `distill_alpha` > 0, ALBEF's
momentum distillation (moderator/training/momentum.py: soft targets from an EMA copy of the
head, for the classification loss and for ITC). The training loss in History then includes
those terms (against the soft targets). Stage 2 (finetune.py) has none of them, except its own
ITC (`stage2_itc_weight`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import Progress
from torch import nn

from moderator.model.fusion_config import Modalities
from moderator.model.fusion_heads import CrossFusionHead, FusionHead, HeadConfig, build_head
from moderator.model.fusion_model import apply_modalities
from moderator.model.object_tags import MAX_TAGS
from moderator.serving_settings import Device
from moderator.training.device import training_device
from moderator.training.embedding_cache import Embeddings
from moderator.training.itc import ImageTextContrastive
from moderator.training.metrics import mean_auroc
from moderator.training.momentum import MomentumHead, ramped_alpha, soft_labels
from moderator.training.rgcl import build_index, label_groups, rgcl_loss

logger = logging.getLogger(__name__)

ClassWeighting = Literal["none", "sqrt", "balanced"]
MAX_POS_WEIGHT = 100.0
AUROC_TIE = 1e-4
DEFAULT_MOMENTUM = 0.995


class TrainConfig(BaseModel):
    """Training options; every one has a `moderator train` flag of the same name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "fusion"
    head: HeadConfig = Field(default_factory=HeadConfig)
    modalities: Modalities = "both"
    epochs: int = Field(default=100, gt=0)
    batch_size: int = Field(default=256, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    patience: int = Field(default=8, gt=0, description="epochs without a better val AUROC")
    seed: int = 0
    class_weighting: ClassWeighting = Field(
        default="sqrt",
        description="positive-class loss weight per category: none, sqrt(neg/pos), neg/pos",
    )
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    target_precision: float = Field(default=0.9, gt=0, le=1)
    unfreeze: bool = Field(default=False, description="stage 2: fine-tune the encoders too")
    encoder_learning_rate: float = Field(default=1e-5, gt=0)
    stage2_epochs: int = Field(default=3, gt=0)
    stage2_batch_size: int = Field(default=32, gt=0)
    device: Device = Field(
        default="auto", description="auto (CUDA when torch sees one), cpu, cuda or cuda:N"
    )
    amp: bool = Field(
        default=True,
        description="stage 2 on CUDA: bf16 autocast (fp16 + loss scaling on GPUs "
        "without bf16); no effect on the CPU or in stage 1",
    )
    rgcl_weight: float = Field(
        default=0.0,
        ge=0,
        description="stage 1: weight of the retrieval-guided contrastive loss (0: off)",
    )
    rgcl_negatives: int = Field(
        default=8, gt=0, description="RGCL: hard negatives retrieved per example"
    )
    rgcl_temperature: float = Field(
        default=0.1, gt=0, description="RGCL: temperature of the InfoNCE loss"
    )
    knn_vote_weight: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of the kNN vote of the training rows in the served score "
        "(RGCL's inference; moderator/model/neighbour_vote.py; 0: the head alone)",
    )
    knn_k: int = Field(default=10, gt=0, description="kNN vote: nearest training rows that vote")
    knn_temperature: float = Field(
        default=0.1, gt=0, description="kNN vote: votes weigh softmax(cosine / temperature)"
    )
    itc_weight: float = Field(
        default=0.0,
        ge=0,
        description="stage 1: weight of the image-text contrastive loss on the cross head's "
        "text and image projections (ALBEF's ITC; 0: off)",
    )
    stage2_itc_weight: float = Field(
        default=0.0,
        ge=0,
        description="stage 2: weight of the image-text contrastive loss on the cross head's "
        "projections of the fine-tuning encoders' embeddings (ALBEF's ITC; 0: off)",
    )
    distill_alpha: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="stage 1: weight of the momentum head's soft targets (ALBEF's momentum "
        "distillation, ramped up over the first epoch; 0: off)",
    )
    momentum: float = Field(
        default=DEFAULT_MOMENTUM,
        gt=0,
        lt=1,
        description="momentum distillation: EMA factor of the copy",
    )

    itm: bool = Field(
        default=False,
        description="also train an image-text matching head (served as the score "
        "image_text_mismatch; stage 1 only)",
    )
    object_tags: int = Field(
        default=0,
        ge=0,
        le=MAX_TAGS,
        description="join each text to the names of its image's top-k ImageNet classes "
        "(OSCAR's object tags; moderator/model/object_tags.py); 0: off",
    )

    @model_validator(mode="after")
    def _itc_needs_projections(self) -> TrainConfig:
        if self.itm and (self.unfreeze or self.modalities != "both"):
            raise ValueError(
                "itm needs modalities=both and frozen encoders (stage 2 would change the "
                "embeddings the matching head was trained on)"
            )
        if self.object_tags and (self.unfreeze or self.modalities != "both"):
            raise ValueError(
                "object_tags needs modalities=both and frozen encoders (the tags come from the "
                "image embedding that stage 2 would change)"
            )
        if self.stage2_itc_weight > 0 and not self.unfreeze:
            raise ValueError("stage2_itc_weight needs unfreeze (stage 2 is where it applies)")
        if self.momentum != DEFAULT_MOMENTUM and self.distill_alpha == 0:
            raise ValueError("momentum is an option of momentum distillation: set distill_alpha")
        weights = {"itc_weight": self.itc_weight, "stage2_itc_weight": self.stage2_itc_weight}
        for name, weight in weights.items():
            if weight > 0 and self.head.type != "cross":
                raise ValueError(
                    f"{name} needs the cross head (its text and image projections are what "
                    f"the loss aligns); the {self.head.type} head has none"
                )
            if weight > 0 and self.modalities != "both":
                raise ValueError(f"{name} needs modalities=both (it aligns text with image)")
        return self


@dataclass
class History:
    """Per epoch: mean training loss, validation loss and validation mean AUROC; best_epoch
    is 0-based (the first epoch is 0)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_auroc: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stage2_val_auroc: list[float] = field(default_factory=list)


def pos_weight(labels: np.ndarray, scheme: ClassWeighting) -> torch.Tensor:
    """Per-category weight of positive examples in the loss, from training label counts."""
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    if scheme == "none":
        ratio = np.ones_like(ratio)
    elif scheme == "sqrt":
        ratio = np.sqrt(ratio)
    return torch.tensor(np.clip(ratio, 1 / MAX_POS_WEIGHT, MAX_POS_WEIGHT), dtype=torch.float32)


def _tensors(
    embeddings: Embeddings, modalities: Modalities
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    text, image, has_image = apply_modalities(
        embeddings.text, embeddings.image, embeddings.has_image, modalities
    )
    return torch.from_numpy(text), torch.from_numpy(image), torch.from_numpy(has_image)


def predict(head: FusionHead, embeddings: Embeddings, modalities: Modalities) -> np.ndarray:
    """Sigmoid scores [N, C] of a head on cached embeddings, in eval mode."""
    head.eval()
    with torch.inference_mode():
        logits = head(*_tensors(embeddings, modalities))
    return torch.sigmoid(logits).numpy()


def train_head(
    train: Embeddings,
    train_labels: np.ndarray,
    val: Embeddings,
    val_labels: np.ndarray,
    config: TrainConfig,
    progress: Progress | None = None,
) -> tuple[FusionHead, History]:
    """Stage 1: fit a fresh head on config.device (fp32); returns the weights of the best
    validation epoch, on the CPU."""
    device = training_device(config.device)
    torch.manual_seed(config.seed)
    # Initial weights and batch order come from the CPU generator, so they are the same on any
    # device; only the arithmetic (and CUDA's dropout masks) differ.
    generator = torch.Generator().manual_seed(config.seed)
    text, image, has_image = (t.to(device) for t in _tensors(train, config.modalities))
    labels = torch.from_numpy(train_labels.astype(np.float32)).to(device)
    head = build_head(config.head, text.shape[1], image.shape[1], labels.shape[1]).to(device)
    head.set_input_statistics(text, image, has_image)
    # ITC: the temperature is trained alongside the head (no weight decay) but is not part of it.
    itc = ImageTextContrastive().to(device) if config.itc_weight > 0 else None
    parameters: list[dict[str, object]] = [{"params": list(head.parameters())}]
    if itc is not None:
        parameters.append({"params": list(itc.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    weights = pos_weight(train_labels, config.class_weighting).to(device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weights)
    val_inputs = tuple(t.to(device) for t in _tensors(val, config.modalities))
    val_targets = torch.from_numpy(val_labels.astype(np.float32)).to(device)
    groups = label_groups(labels) if config.rgcl_weight > 0 else None
    # MoD: an EMA copy of the head makes soft targets; off, nothing is built.
    mod = MomentumHead(head, config.momentum) if config.distill_alpha > 0 else None
    steps_per_epoch, step = math.ceil(len(labels) / config.batch_size), 0
    history = History()
    best_state, best_score, best_loss = copy.deepcopy(head.state_dict()), -math.inf, math.inf
    task = progress.add_task("stage 1: head", total=config.epochs) if progress else None
    for epoch in range(config.epochs):
        head.train()
        order = torch.randperm(len(labels), generator=generator)
        # RGCL: this epoch's index of the training set's fused representations (no dropout).
        index = build_index(head, text, image, has_image) if groups is not None else None
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size].to(device)
            inputs = (text[rows], image[rows], has_image[rows])
            alpha = ramped_alpha(config.distill_alpha, step, steps_per_epoch)
            targets = (
                labels[rows]
                if mod is None
                else soft_labels(labels[rows], mod.logits(*inputs), alpha)
            )
            if index is None or groups is None:
                loss = loss_fn(head(*inputs), targets)
            else:
                logits, features = head.logits_and_features(*inputs)
                contrastive = rgcl_loss(
                    features, rows, index, groups, config.rgcl_negatives, config.rgcl_temperature
                )
                loss = loss_fn(logits, targets) + config.rgcl_weight * contrastive
            if itc is not None and isinstance(head, CrossFusionHead):
                projected = head.unimodal_projections(*inputs)
                momentum = None if mod is None else mod.projections(*inputs)
                loss = loss + config.itc_weight * itc(*projected, has_image[rows], momentum, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if mod is not None:
                mod.update(head)
            step += 1
            total += float(loss.detach()) * len(rows)
        head.eval()
        with torch.inference_mode():
            val_logits = head(*val_inputs)
            val_loss = float(loss_fn(val_logits, val_targets))
        score = mean_auroc(val_labels, torch.sigmoid(val_logits).cpu().numpy())
        score = -val_loss if math.isnan(score) else score
        history.train_loss.append(total / len(labels))
        history.val_loss.append(val_loss)
        history.val_auroc.append(score)
        if progress and task is not None:
            progress.update(task, advance=1, description=f"stage 1: head (val AUROC {score:.3f})")
        # Better AUROC, or the same AUROC (within 1e-4) at a lower loss: AUROC saturates early on
        # easy data while the loss, and so calibration, still improves.
        tie = score >= best_score - AUROC_TIE and val_loss < best_loss
        if score > best_score + AUROC_TIE or tie:
            best_state, history.best_epoch = copy.deepcopy(head.state_dict()), epoch
            best_score, best_loss = max(score, best_score), val_loss
        elif epoch - history.best_epoch >= config.patience:
            logger.info("early stop at epoch %d, best %d", epoch, history.best_epoch)
            break
    head.load_state_dict(best_state)
    return head.to("cpu").eval(), history
