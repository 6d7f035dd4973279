"""Image-text contrastive loss (ITC) for stage 1, after ALBEF ("align before fuse").

After Li et al. 2021, "Align before Fuse: Vision and Language Representation Learning with
Momentum Distillation": the unimodal embeddings of each (text, image) pair are pulled together
and pushed away from the other pairs of the batch before the fusion layers see them. Here the
unimodal embeddings are the cross head's text and image projections
(`CrossFusionHead.unimodal_projections`): with frozen encoders these are what the loss can
align. Symmetric InfoNCE (text→image and image→text, averaged) over the cosine similarities of
the L2-normalised projections of the batch's rows that have both a text and an image (rows
without an image take no part), divided by a learnable temperature.

The temperature lives here, not in the head: it is a training-only parameter, so the saved head
(and the serving checkpoint format) is the same with or without ITC. As in CLIP it is
log-parameterised, and as in ALBEF it starts at 0.07 and is kept within [0.001, 0.5].

With momentum distillation (stage 1, moderator/training/momentum.py) the targets are softened
by the momentum head's projections (`distilled_itc_loss`, ALBEF's ITC with MoD); in-batch
negatives only (no momentum queue). Stage 2's ITC (finetune.py) has no momentum distillation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITIAL_TEMPERATURE = 0.07
MIN_TEMPERATURE = 0.001
MAX_TEMPERATURE = 0.5


def similarities(
    text: torch.Tensor, image: torch.Tensor, rows: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Cosine similarities [R, R] of the rows' text and image projections, over temperature."""
    t = nn.functional.normalize(text[rows], dim=1)
    i = nn.functional.normalize(image[rows], dim=1)
    logits: torch.Tensor = t @ i.T / temperature
    return logits


def _no_pairs(text: torch.Tensor, image: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """0 with a gradient path, for a batch with fewer than two images: nothing to contrast."""
    return (text.sum() + image.sum()) * 0.0 + temperature * 0.0


def itc_loss(
    text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over in-batch negatives: text [B, D] and image [B, D] projections
    (normalised here), has_image bool [B]; pair b's positive is itself. 0 (with a gradient
    path) when fewer than two rows have an image: there is no negative to contrast with."""
    rows = has_image.nonzero(as_tuple=True)[0]
    if len(rows) < 2:
        return _no_pairs(text, image, temperature)
    logits = similarities(text, image, rows, temperature)
    targets = torch.arange(len(rows), device=logits.device)
    loss: torch.Tensor = (
        nn.functional.cross_entropy(logits, targets)
        + nn.functional.cross_entropy(logits.T, targets)
    ) / 2
    return loss


def distilled_itc_loss(
    text: torch.Tensor,
    image: torch.Tensor,
    has_image: torch.Tensor,
    temperature: torch.Tensor,
    momentum: tuple[torch.Tensor, torch.Tensor],
    alpha: float,
) -> torch.Tensor:
    """itc_loss with ALBEF's momentum-distilled targets: for text→image,
    (1-alpha)·one-hot + alpha·softmax(t_m · i_mᵀ / τ) from the momentum head's projections
    `momentum` (text, image; normalised here, no gradient), and the same for image→text.
    alpha = 0 is itc_loss (up to rounding)."""
    rows = has_image.nonzero(as_tuple=True)[0]
    if len(rows) < 2:
        return _no_pairs(text, image, temperature)
    logits = similarities(text, image, rows, temperature)
    with torch.no_grad():
        momentum_logits = similarities(*momentum, rows, temperature)
        one_hot = torch.eye(len(rows), device=logits.device, dtype=logits.dtype)
        text_targets = (1 - alpha) * one_hot + alpha * momentum_logits.softmax(dim=1)
        image_targets = (1 - alpha) * one_hot + alpha * momentum_logits.T.softmax(dim=1)
    text_to_image = -(logits.log_softmax(dim=1) * text_targets).sum(dim=1).mean()
    image_to_text = -(logits.T.log_softmax(dim=1) * image_targets).sum(dim=1).mean()
    loss: torch.Tensor = (text_to_image + image_to_text) / 2
    return loss


class ImageTextContrastive(nn.Module):
    """The learnable temperature and the loss; train it alongside the head, save only the head."""

    def __init__(self, temperature: float = INITIAL_TEMPERATURE) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        momentum: tuple[torch.Tensor, torch.Tensor] | None = None,
        alpha: float = 0.0,
    ) -> torch.Tensor:
        """The loss; with `momentum` (the momentum head's projections), the distilled one."""
        with torch.no_grad():  # ALBEF clamps the temperature in place before each use
            self.log_temperature.clamp_(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))
        if momentum is None:
            return itc_loss(text, image, has_image, self.temperature)
        return distilled_itc_loss(text, image, has_image, self.temperature, momentum, alpha)
