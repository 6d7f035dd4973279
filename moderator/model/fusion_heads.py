"""Fusion heads: (caption embedding, image embedding, has_image) → per-category logits.

Three heads share one base class and one contract test (tests/unit/test_model_fusion_heads.py):

- late: one MLP per modality, logits added (the image term only where there is an image);
- concat: one MLP over [text, image, has_image];
- cross: Hate-CLIPper's feature interaction matrix, the outer product of projected, unit-length
  embeddings. With `unimodal_terms` (the default) a constant 1 is appended to each projection
  first, so the flattened matrix also holds both projections themselves: a plain outer product
  throws the single-modality signal away, and for a post without an image it is all zeros.
  With `with_embeddings` (the default) the MLP also sees the standardised embeddings, the
  concat head's input, so the default head is never worse off than concat.

Inputs are standardised with statistics of the training embeddings, stored as buffers, so the
raw encoder outputs (unit-length MiniLM vectors, ReLU6 Lite0 features, CLIP projections) all
arrive at the MLPs on the same scale.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

HeadType = Literal["late", "concat", "cross"]


class HeadConfig(BaseModel):
    """Head architecture, recorded in the checkpoint's config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: HeadType = "cross"
    hidden_dim: int = Field(default=256, gt=0, description="width of the MLP hidden layer")
    projection_dim: int = Field(default=32, gt=0, description="cross: projection size d")
    unimodal_terms: bool = Field(default=True, description="cross: append 1 before the product")
    with_embeddings: bool = Field(
        default=True,
        description="cross: the MLP also sees the standardised embeddings themselves, so the "
        "head can do whatever concat does on top of the interactions",
    )
    dropout: float = Field(default=0.2, ge=0, lt=1)


def _mlp(inputs: int, config: HeadConfig, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(config.dropout),
        nn.Linear(inputs, config.hidden_dim),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden_dim, outputs),
    )


def _final_layer(mlp: nn.Sequential, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mlp(inputs), the input of its last layer): the same operations as mlp(inputs)."""
    hidden: torch.Tensor = mlp[:-1](inputs)
    scores: torch.Tensor = mlp[-1](hidden)
    return scores, hidden


class FusionHead(nn.Module):
    """Base class: input standardisation buffers and the forward signature."""

    text_mean: torch.Tensor
    text_std: torch.Tensor
    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(self, config: HeadConfig, text_dim: int, image_dim: int, outputs: int) -> None:
        super().__init__()
        self.config = config
        self.text_dim, self.image_dim, self.outputs = text_dim, image_dim, outputs
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_std", torch.ones(text_dim))
        self.register_buffer("image_mean", torch.zeros(image_dim))
        self.register_buffer("image_std", torch.ones(image_dim))

    def set_input_statistics(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> None:
        """Standardise with the training set's per-dimension mean and spread."""
        if len(text) > 1:
            self.text_mean.copy_(text.mean(dim=0))
            self.text_std.copy_(text.std(dim=0).clamp(min=1e-4))
        with_image = image[has_image]
        if len(with_image) > 1:
            self.image_mean.copy_(with_image.mean(dim=0))
            self.image_std.copy_(with_image.std(dim=0).clamp(min=1e-4))

    def standardise(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ standardised text, standardised image (zeros without image), has_image [B, 1]."""
        present = has_image.to(text.dtype).unsqueeze(1)
        t = (text - self.text_mean) / self.text_std
        i = (image - self.image_mean) / self.image_std * present
        return t, i, present

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> torch.Tensor:
        """text [B, Dt], image [B, Di], has_image bool [B] → logits [B, outputs]."""
        return self.logits_and_features(text, image, has_image)[0]

    def logits_and_features(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (logits [B, outputs], fused representation [B, F]): the input of the final linear
        layer (the MLP's hidden activations; late: both MLPs', the image half zero without an
        image). Training's RGCL loss works on it; the logits are exactly forward's."""
        raise NotImplementedError


class LateFusionHead(FusionHead):
    def __init__(self, config: HeadConfig, text_dim: int, image_dim: int, outputs: int) -> None:
        super().__init__(config, text_dim, image_dim, outputs)
        self.text_mlp = _mlp(text_dim, config, outputs)
        self.image_mlp = _mlp(image_dim, config, outputs)

    def logits_and_features(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t, i, present = self.standardise(text, image, has_image)
        ht, hi = self.text_mlp[:-1](t), self.image_mlp[:-1](i)
        scores: torch.Tensor = self.text_mlp[-1](ht) + present * self.image_mlp[-1](hi)
        return scores, torch.cat([ht, present * hi], dim=1)


class ConcatMLPHead(FusionHead):
    def __init__(self, config: HeadConfig, text_dim: int, image_dim: int, outputs: int) -> None:
        super().__init__(config, text_dim, image_dim, outputs)
        self.mlp = _mlp(text_dim + image_dim + 1, config, outputs)

    def logits_and_features(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t, i, present = self.standardise(text, image, has_image)
        return _final_layer(self.mlp, torch.cat([t, i, present], dim=1))


class CrossFusionHead(FusionHead):
    def __init__(self, config: HeadConfig, text_dim: int, image_dim: int, outputs: int) -> None:
        super().__init__(config, text_dim, image_dim, outputs)
        d = config.projection_dim
        self.text_projection = nn.Linear(text_dim, d)
        self.image_projection = nn.Linear(image_dim, d)
        side = d + 1 if config.unimodal_terms else d
        extra = text_dim + image_dim + 1 if config.with_embeddings else 0
        self.mlp = _mlp(side * side + extra, config, outputs)

    def unimodal_projections(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(text [B, d], image [B, d]) projections of the standardised embeddings, before the
        normalisation forward applies (image rows without an image are the projection of zeros).
        Training's ITC loss (moderator/training/itc.py) aligns them; forward does not use it."""
        t, i, _ = self.standardise(text, image, has_image)
        projected: tuple[torch.Tensor, torch.Tensor] = (
            self.text_projection(t),
            self.image_projection(i),
        )
        return projected

    def logits_and_features(
        self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t, i, present = self.standardise(text, image, has_image)
        pt = nn.functional.normalize(self.text_projection(t), dim=1)
        pi = nn.functional.normalize(self.image_projection(i), dim=1) * present
        if self.config.unimodal_terms:
            pt = torch.cat([pt, torch.ones_like(pt[:, :1])], dim=1)
            pi = torch.cat([pi, torch.ones_like(pi[:, :1])], dim=1)
        interactions = torch.einsum("bi,bj->bij", pt, pi).flatten(1)
        if self.config.with_embeddings:
            interactions = torch.cat([interactions, t, i, present], dim=1)
        return _final_layer(self.mlp, interactions)


HEADS: dict[str, type[FusionHead]] = {
    "late": LateFusionHead,
    "concat": ConcatMLPHead,
    "cross": CrossFusionHead,
}


def build_head(config: HeadConfig, text_dim: int, image_dim: int, outputs: int) -> FusionHead:
    """A freshly initialised head of config.type (weights from torch's default init)."""
    return HEADS[config.type](config, text_dim, image_dim, outputs)
