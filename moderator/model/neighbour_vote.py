"""The kNN vote of retrieval-guided classification: labelled examples' fused representations,
kept in the checkpoint and consulted at inference.

After Mei et al. 2024 (RGCL), which blends the head's score with the labels of the nearest
training examples. A fusion checkpoint may carry `neighbours.safetensors`: the unit-length fused
representations (the input of the head's final linear layer, `FusionHead.logits_and_features`)
of labelled examples, fp16, and their label vectors, uint8. For a post, the k nearest examples
by cosine vote per category with weights softmax(cos / temperature), and the served score is
(1 - weight)·head + weight·vote. New labelled examples join with `moderator neighbours add`:
the head is untouched, the checkpoint gets a new model version.

Exact search (one matrix product against every stored example): at F = 256 that is ~0.5 MFLOP
per 1,000 examples per post, and 512 bytes per example.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from moderator.model.checkpoint_files import load_tensors
from moderator.model.errors import ModelLoadError

NEIGHBOURS_FILE = "neighbours.safetensors"
FEATURE_FORMAT = torch.float16


class NeighbourVoteConfig(BaseModel):
    """How the vote is taken and blended; the examples themselves are in the weights file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=10, ge=1, description="nearest examples that vote")
    temperature: float = Field(
        default=0.1, gt=0.0, description="votes weigh softmax(cosine / temperature)"
    )
    weight: float = Field(
        default=0.5, gt=0.0, le=1.0, description="the vote's share of the served score"
    )
    examples: int = Field(ge=1, description="labelled examples stored (checked against the file)")


class NeighbourVote(nn.Module):
    """The stored examples (buffers) and the vote over them."""

    features: torch.Tensor  # [M, F] unit length, fp32
    labels: torch.Tensor  # [M, C] 0/1, fp32

    def __init__(self, config: NeighbourVoteConfig, features: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        check_examples(config, features, labels)
        self.config = config
        self.register_buffer("features", nn.functional.normalize(features.float(), dim=1))
        self.register_buffer("labels", labels.float())

    def vote(self, fused: torch.Tensor) -> torch.Tensor:
        """Fused representations [B, F] → per category, the weighted share of the k nearest
        examples that carry it [B, C] in [0, 1]."""
        # fp32 whatever the serving precision: fp16 cosines tie and reorder near neighbours.
        with torch.autocast(fused.device.type, enabled=False):
            similarities = nn.functional.normalize(fused.float(), dim=1) @ self.features.T
            k = min(self.config.k, similarities.shape[1])
            nearest, rows = similarities.topk(k, dim=1)
            weights = torch.softmax(nearest / self.config.temperature, dim=1)
            votes: torch.Tensor = torch.einsum("bk,bkc->bc", weights, self.labels[rows])
        return votes

    def blend(self, head_scores: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        """(1 - weight)·head_scores + weight·vote, both [B, C] probabilities."""
        weight = self.config.weight
        return (1.0 - weight) * head_scores.float() + weight * self.vote(fused)

    def tensors(self) -> dict[str, torch.Tensor]:
        """What neighbours.safetensors holds: features in fp16, labels in uint8."""
        return {
            "features": self.features.to(FEATURE_FORMAT),
            "labels": self.labels.to(torch.uint8),
        }


def check_examples(
    config: NeighbourVoteConfig, features: torch.Tensor, labels: torch.Tensor
) -> None:
    """Raise ValueError unless features [M, F] and labels [M, C] hold config.examples rows of
    0/1 labels."""
    if features.ndim != 2 or labels.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"features {tuple(features.shape)} and labels {tuple(labels.shape)} must be "
            "[examples, F] and [examples, categories]"
        )
    if len(features) != config.examples:
        raise ValueError(f"{len(features)} examples stored, but the config says {config.examples}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 or 1")


def load_neighbours(
    path: Path, config: NeighbourVoteConfig, categories: int, fused_dim: int
) -> NeighbourVote:
    """neighbours.safetensors, checked against the config, the categories and the head's fused
    representation size; every mismatch is a ModelLoadError naming the file."""
    state = load_tensors(path)
    missing = sorted({"features", "labels"} - set(state))
    if missing:
        raise ModelLoadError(f"invalid {path}: missing tensors {missing}")
    features, labels = state["features"], state["labels"]
    try:
        vote = NeighbourVote(config, features, labels)
    except ValueError as e:
        raise ModelLoadError(f"invalid {path}: {e}") from e
    if labels.shape[1] != categories or features.shape[1] != fused_dim:
        raise ModelLoadError(
            f"invalid {path}: examples are {features.shape[1]}-d with {labels.shape[1]} labels, "
            f"but the head's fused representation is {fused_dim}-d over {categories} categories"
        )
    return vote.eval()
