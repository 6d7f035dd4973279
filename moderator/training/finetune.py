"""Stage 2: fine-tune encoders and head end to end (`moderator train --unfreeze`).

Starts from the stage-1 head. Encoders get a much smaller learning rate than the head, and
BatchNorm layers keep their pretrained statistics (small batches would ruin them). Runs on
config.device (`--device`; auto picks CUDA when torch sees one) with AMP there (see
moderator/training/device.py); on CPU it works but is only practical for small models.

With `stage2_itc_weight` > 0 the loss adds ALBEF's image-text contrastive term
(moderator/training/itc.py) on the cross head's projections of the embeddings the encoders
compute in that step, so, unlike stage 1's ITC, the gradient reaches the encoders: they are
aligned before the head fuses them, as in ALBEF. Stage 2 has no momentum distillation (stage
1's `distill_alpha`, moderator/training/momentum.py, trains the head only).
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from moderator.model.backbone_base import BackboneEncoder
from moderator.model.fusion_heads import CrossFusionHead, FusionHead
from moderator.training.dataset import Dataset
from moderator.training.device import LossStep, amp_dtype, autocast, training_device
from moderator.training.embedding_cache import compute_embeddings, load_pixels
from moderator.training.itc import ImageTextContrastive
from moderator.training.metrics import mean_auroc
from moderator.training.trainer import History, TrainConfig, pos_weight, predict

logger = logging.getLogger(__name__)


def _set_train(backbone: BackboneEncoder, head: FusionHead, enabled: bool) -> None:
    for module in [*backbone.trainable_modules().values(), head]:
        module.train(enabled)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.eval()


def _batch_logits(
    backbone: BackboneEncoder,
    head: FusionHead,
    dataset: Dataset,
    rows: list[int],
    config: TrainConfig,
    device: torch.device,
    itc: ImageTextContrastive | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the ITC loss of the batch: 0 without `itc`) from embeddings computed now."""
    examples = [dataset.examples[i] for i in rows]
    text = backbone.text_features([e.text for e in examples]).float()
    if config.modalities == "image":
        text = torch.zeros_like(text)
    has_image = torch.tensor(
        [e.image is not None and config.modalities != "text" for e in examples], device=device
    )
    image = torch.zeros((len(rows), backbone.image_dim), device=device)
    with_image = [i for i, e in enumerate(examples) if e.image is not None]
    if with_image and config.modalities != "text":
        size = backbone.preprocessing.image_size
        pixels = np.stack([load_pixels(examples[i].image, size) for i in with_image])  # type: ignore[arg-type]
        # uint8 to the device (pinned on CUDA), scaled there.
        features = backbone.image_features(backbone.preprocessing.to_tensor(pixels, device))
        image = image.index_put((torch.tensor(with_image, device=device),), features.float())
    scores: torch.Tensor = head(text, image, has_image)
    contrastive = torch.zeros((), device=device)
    if itc is not None and isinstance(head, CrossFusionHead):
        projected = head.unimodal_projections(text, image, has_image)
        contrastive = itc(projected[0].float(), projected[1].float(), has_image)
    return scores, contrastive


def finetune_encoders(
    backbone: BackboneEncoder,
    head: FusionHead,
    train: Dataset,
    val: Dataset,
    config: TrainConfig,
    history: History,
    progress: Progress | None = None,
) -> None:
    """Update backbone and head in place, keeping the weights of the best validation epoch.

    Both end up back on the CPU (the stage-1 head arrives there too).
    """
    device = training_device(config.device)
    dtype = amp_dtype(device, config.amp)
    backbone.to(device)
    head.to(device)
    encoder_params = [p for m in backbone.trainable_modules().values() for p in m.parameters()]
    for p in encoder_params:
        p.requires_grad_(True)
    itc = ImageTextContrastive().to(device) if config.stage2_itc_weight > 0 else None
    groups: list[dict[str, object]] = [
        {"params": encoder_params, "lr": config.encoder_learning_rate},
        {"params": list(head.parameters()), "lr": config.learning_rate / 10},
    ]
    if itc is not None:  # the temperature: trained here, thrown away with the module
        groups.append({"params": list(itc.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    step = LossStep(optimizer, dtype)
    labels = torch.from_numpy(train.labels()).to(device)
    loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=pos_weight(train.labels(), config.class_weighting).to(device)
    )
    generator = torch.Generator().manual_seed(config.seed + 1)
    best_score = -math.inf
    best: tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    task = progress.add_task("stage 2: encoders", total=config.stage2_epochs) if progress else None
    for _ in range(config.stage2_epochs):
        _set_train(backbone, head, True)
        order = torch.randperm(len(labels), generator=generator).tolist()
        for start in range(0, len(order), config.stage2_batch_size):
            rows = order[start : start + config.stage2_batch_size]
            with autocast(device, dtype):
                logits, contrastive = _batch_logits(
                    backbone, head, train, rows, config, device, itc
                )
            loss = loss_fn(logits.float(), labels[rows])
            step(loss if itc is None else loss + config.stage2_itc_weight * contrastive)
        _set_train(backbone, head, False)
        score = mean_auroc(val.labels(), _val_scores(backbone, head, val, config, device))
        history.stage2_val_auroc.append(score)
        if progress and task is not None:
            progress.update(task, advance=1, description=f"stage 2 (val AUROC {score:.3f})")
        if best is None or score > best_score:
            best_score = score
            best = (
                {n: copy.deepcopy(m.state_dict()) for n, m in backbone.trainable_modules().items()},
                copy.deepcopy(head.state_dict()),
            )
    if best is not None:
        for name, module in backbone.trainable_modules().items():
            module.load_state_dict(best[0][name])
        head.load_state_dict(best[1])
    backbone.to(torch.device("cpu"))
    head.to("cpu").eval()
    for p in encoder_params:
        p.requires_grad_(False)


def _val_scores(
    backbone: BackboneEncoder,
    head: FusionHead,
    val: Dataset,
    config: TrainConfig,
    device: torch.device,
) -> np.ndarray:
    """Validation scores with the current encoders (recomputed: they are changing)."""
    embeddings = compute_embeddings(backbone, val)
    scores = predict(head.to("cpu"), embeddings, config.modalities)
    head.to(device)
    return scores
