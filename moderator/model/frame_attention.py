"""Trained temporal attention pooling over a post's frames (#14): gated attention, after Ilse et
al. 2018, "Attention-based deep multiple instance learning".

Each frame i of a post (an image row: its image embedding e_i) gets a logit

    logit_i = wᵀ (tanh(V ê_i) ⊙ sigmoid(U ê_i))      ê_i: e_i standardised (training statistics)

and the post's score per category is Σ_i softmax(logit)_i · score_i, the softmax over that
post's frames. A post with one frame keeps its score. The same formula pools in training
(moderator/training/frame_training.py, in torch) and in the worker
(workers.features.pool_frames, with moderator.frame_pooling.pool_scores), so the served pooled
score is the one training optimised.

The module is an optional part of a fusion checkpoint: its own safetensors file named in
config.json (`frame_attention: {hidden: H}`, `frame_attention_weights`), counted in the model
version only when present. Models that have it say so with `has_frame_attention` and answer
`frame_logits`; the ModerationModel protocol does not require either.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

FRAME_ATTENTION_FILE = "frame_attention.safetensors"
DEFAULT_HIDDEN = 64


class FrameAttentionConfig(BaseModel):
    """The attention module's shape, recorded in config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(default=DEFAULT_HIDDEN, gt=0, description="size of V and U's output")


class FrameAttention(nn.Module):
    """Image embeddings [N, D] → one attention logit per row [N]."""

    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(self, config: FrameAttentionConfig, image_dim: int) -> None:
        super().__init__()
        self.config = config
        self.image_dim = image_dim
        self.register_buffer("image_mean", torch.zeros(image_dim))
        self.register_buffer("image_std", torch.ones(image_dim))
        self.value = nn.Linear(image_dim, config.hidden)  # V
        self.gate = nn.Linear(image_dim, config.hidden)  # U
        self.weight = nn.Linear(config.hidden, 1)  # w
        # Zero w: every frame starts with the same weight, i.e. mean pooling.
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)

    def set_input_statistics(self, image: torch.Tensor) -> None:
        """Standardise with the training frames' per-dimension mean and spread."""
        if len(image) > 1:
            self.image_mean.copy_(image.mean(dim=0))
            self.image_std.copy_(image.std(dim=0).clamp(min=1e-4))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.image_mean) / self.image_std
        hidden = torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))
        logits: torch.Tensor = self.weight(hidden).squeeze(-1)
        return logits


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@runtime_checkable
class FrameAttentionModel(Protocol):
    """What a model with a trained frame attention adds to ModerationModel (optional)."""

    has_frame_attention: bool

    def frame_logits(self, image_embeddings: np.ndarray) -> np.ndarray:
        """float32 [N, image_embedding_dim] → float32 [N] attention logits."""
        ...


def frame_attention_of(model: object) -> FrameAttentionModel | None:
    """The model as a FrameAttentionModel when it has a trained frame attention, else None."""
    if isinstance(model, FrameAttentionModel) and model.has_frame_attention:
        return model
    return None
