"""Momentum distillation (MoD) for stage 1, after ALBEF.

After Li et al. 2021, "Align before Fuse: Vision and Language Representation Learning with
Momentum Distillation": a momentum copy of the model, an exponential moving average of its
weights, makes soft pseudo-targets that are blended with the labels, so the model is not pushed
all the way to a label the data may not support (noisy labels; pairs whose caption fits other
images of the batch too). Here the model is the fusion head (the encoders are frozen in stage 1):

- the copy starts as the fresh head and after every optimizer step becomes
  θ_m ← m·θ_m + (1-m)·θ (`momentum`, m); it never gets gradients and runs in eval mode (no
  dropout) to make the targets;
- classification target: (1-alpha)·y + alpha·sigmoid(z_m), z_m the copy's logits for the batch;
- with ITC on, its targets become (1-alpha)·one-hot + alpha·softmax of the copy's projections'
  similarities (moderator/training/itc.py, `distilled_itc_loss`);
- alpha ramps linearly from 0 over the first epoch's steps, as ALBEF does, so the early targets of
  a copy that has learnt nothing yet do not count.

Stage 2 (finetune.py) has no momentum distillation.
"""

from __future__ import annotations

import copy

import torch

from moderator.model.fusion_heads import CrossFusionHead, FusionHead


def ramped_alpha(alpha: float, step: int, steps_per_epoch: int) -> float:
    """alpha at optimizer step `step` (0-based, over all epochs): linear from 0 over the first
    epoch's steps, then `alpha` (ALBEF: alpha * min(1, i / len(data_loader)) in epoch 0)."""
    return alpha * min(1.0, step / max(steps_per_epoch, 1))


def soft_labels(labels: torch.Tensor, momentum_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1-alpha)·labels + alpha·sigmoid(momentum_logits): BCE targets in [0, 1]."""
    return (1 - alpha) * labels + alpha * torch.sigmoid(momentum_logits)


class MomentumHead:
    """The momentum (EMA) copy of a head, and the targets it makes."""

    def __init__(self, head: FusionHead, momentum: float) -> None:
        if not 0 < momentum < 1:
            raise ValueError(f"momentum must be in (0, 1), got {momentum}")
        self.momentum = momentum
        self.model = copy.deepcopy(head).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, head: FusionHead) -> None:
        """θ_m ← m·θ_m + (1-m)·θ for every parameter (buffers, the input statistics, are fixed
        after set_input_statistics and were copied with the head)."""
        pairs = zip(self.model.parameters(), head.parameters(), strict=True)
        for momentum_parameter, parameter in pairs:
            momentum_parameter.mul_(self.momentum).add_(parameter.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def logits(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> torch.Tensor:
        result: torch.Tensor = self.model(text, image, has_image)
        return result

    @torch.no_grad()
    def projections(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The copy's text and image projections (cross head only), for ITC's soft targets."""
        if not isinstance(self.model, CrossFusionHead):
            raise TypeError(f"ITC needs the cross head, not {type(self.model).__name__}")
        return self.model.unimodal_projections(text, image, has_image)
