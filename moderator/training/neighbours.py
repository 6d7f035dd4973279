"""The kNN vote's labelled examples (moderator/model/neighbour_vote.py): built from the training
rows at the end of `moderator train --knn-vote-weight W`, and extended afterwards with
`moderator neighbours add` (add_examples), which leaves the head as it is.

The stored representations go through fp16 before any vote is taken, here as in a loaded
checkpoint, so the validation scores thresholds are chosen on are the served ones.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moderator.model.checkpoint_files import checkpoint_version, save_tensors, write_config
from moderator.model.fusion_config import FusionConfig, Modalities
from moderator.model.fusion_heads import FusionHead
from moderator.model.fusion_model import FusionModerationModel, apply_modalities
from moderator.model.neighbour_vote import (
    FEATURE_FORMAT,
    NEIGHBOURS_FILE,
    NeighbourVote,
    NeighbourVoteConfig,
)
from moderator.training.dataset import Dataset
from moderator.training.embedding_cache import Embeddings
from moderator.training.errors import TrainingDataError
from moderator.training.report import choose_thresholds
from moderator.training.rgcl import build_index

logger = logging.getLogger(__name__)

# Cosine at or above which a new example is the same post as a stored one: its labels replace
# the stored ones (a corrected verdict) instead of voting twice.
SAME_POST_COSINE = 0.9999


def fused_representations(
    head: FusionHead, embeddings: Embeddings, modalities: Modalities
) -> torch.Tensor:
    """Unit-length fused representations [N, F] of the rows, in eval mode (no dropout)."""
    text, image, has_image = apply_modalities(
        embeddings.text, embeddings.image, embeddings.has_image, modalities
    )
    return build_index(
        head, torch.from_numpy(text), torch.from_numpy(image), torch.from_numpy(has_image)
    )


def build_neighbours(
    head: FusionHead,
    embeddings: Embeddings,
    labels: np.ndarray,
    modalities: Modalities,
    k: int,
    temperature: float,
    weight: float,
) -> NeighbourVote:
    """The vote over `embeddings`' rows with `labels` [N, C] (0/1)."""
    features = fused_representations(head, embeddings, modalities)
    config = NeighbourVoteConfig(k=k, temperature=temperature, weight=weight, examples=len(labels))
    return NeighbourVote(config, features.to(FEATURE_FORMAT), torch.from_numpy(labels))


def vote_scores(
    head: FusionHead, neighbours: NeighbourVote, embeddings: Embeddings, modalities: Modalities
) -> np.ndarray:
    """The blended scores [N, C] a checkpoint with these examples serves for the rows."""
    text, image, has_image = apply_modalities(
        embeddings.text, embeddings.image, embeddings.has_image, modalities
    )
    head.eval()
    with torch.inference_mode():
        logits, fused = head.logits_and_features(
            torch.from_numpy(text), torch.from_numpy(image), torch.from_numpy(has_image)
        )
        return neighbours.blend(torch.sigmoid(logits), fused).numpy()


@dataclass(frozen=True)
class Added:
    """What `moderator neighbours add` did."""

    model_version: str
    before: int
    added: int
    replaced: int
    positives: dict[str, int]
    file_bytes: int
    thresholds: dict[str, float]
    """The checkpoint's thresholds: re-chosen on validation data when given, else kept."""


def merge_examples(
    old_features: torch.Tensor,
    old_labels: torch.Tensor,
    new_features: torch.Tensor,
    new_labels: torch.Tensor,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stored examples plus new ones → (features, labels, replaced). A new row that is the same
    post as a stored one (cosine ≥ SAME_POST_COSINE) gives it its labels instead of voting
    twice; among new rows that are the same post, the last one counts."""
    old, new = old_features.float(), new_features.float()
    labels = old_labels.float().clone()
    keep = torch.ones(len(new), dtype=torch.bool)
    for start in range(0, len(new), chunk):
        rows = torch.arange(start, min(start + chunk, len(new)))
        # A later new row of the same post wins, so this one is dropped.
        later = (new[rows] @ new.T >= SAME_POST_COSINE) & (
            torch.arange(len(new))[None, :] > rows[:, None]
        )
        keep[rows] &= ~later.any(dim=1)
        if len(old):
            similarity, nearest = (new[rows] @ old.T).max(dim=1)
            for row, stored in zip(
                rows[similarity >= SAME_POST_COSINE].tolist(),
                nearest[similarity >= SAME_POST_COSINE].tolist(),
                strict=True,
            ):
                labels[stored] = new_labels[row].float()
                keep[row] = False
    merged = torch.cat([old, new[keep]])
    replaced = int((~keep).sum())
    return merged, torch.cat([labels, new_labels[keep].float()]), replaced


def add_examples(
    model: FusionModerationModel,
    checkpoint: Path,
    dataset: Dataset,
    embeddings: Embeddings,
    out: Path,
    vote: dict[str, Any],
    validation: tuple[Dataset, Embeddings] | None = None,
) -> Added:
    """Write `checkpoint` plus `dataset`'s rows as labelled examples to `out` (a new checkpoint
    with a new model version). vote: k / temperature / weight to set (None: keep the
    checkpoint's, or the defaults for a checkpoint without examples). With `validation`, the
    thresholds are chosen again (best F1) on its scores with the new examples: more examples
    move the vote, and thresholds chosen for the old ones need not fit."""
    config = model.config
    if [*dataset.categories] != list(config.categories):
        raise TrainingDataError(
            f"{dataset.path}: categories {dataset.categories} differ from the checkpoint's "
            f"{config.categories}"
        )
    framed = [e.line for e in dataset.examples if e.has_frames]
    if framed:
        raise TrainingDataError(
            f"{dataset.path}: rows {framed[:5]} have a video or frames; the kNN vote stores "
            "single-image posts"
        )
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: name a new checkpoint directory")
    head = model.head
    new_features = fused_representations(head, embeddings, config.modalities).to(FEATURE_FORMAT)
    new_labels = torch.from_numpy(dataset.labels())
    if model.neighbours is not None:
        old_features, old_labels = model.neighbours.features.cpu(), model.neighbours.labels.cpu()
        base = model.neighbours.config.model_dump(exclude={"examples"})
    else:
        old_features = torch.zeros(0, new_features.shape[1])
        old_labels = torch.zeros(0, len(config.categories))
        base = NeighbourVoteConfig(examples=1).model_dump(exclude={"examples"})
    features, labels, replaced = merge_examples(old_features, old_labels, new_features, new_labels)
    settings = {**base, **{k: v for k, v in vote.items() if v is not None}}
    vote_config = NeighbourVoteConfig(**settings, examples=len(features))
    neighbours = NeighbourVote(vote_config, features.to(FEATURE_FORMAT), labels)
    thresholds = dict(config.thresholds)
    if validation is not None:
        val_data, val_embeddings = validation
        scores = vote_scores(head, neighbours, val_embeddings, config.modalities)
        thresholds, _ = choose_thresholds(
            val_data.labels(), scores, list(config.categories), target_precision=0.9
        )
    shutil.copytree(checkpoint, out, dirs_exist_ok=True)
    save_tensors(out / NEIGHBOURS_FILE, neighbours.tensors())
    updated = config.model_copy(
        update={
            "neighbours": vote_config,
            "neighbours_weights": NEIGHBOURS_FILE,
            "thresholds": thresholds,
        }
    )
    write_config(out, FusionConfig.model_validate(updated.model_dump()))
    added = len(features) - len(old_features)
    logger.info("added %d examples (%d replaced) to %s", added, replaced, out)
    return Added(
        model_version=checkpoint_version(updated.name, out, updated),
        before=len(old_features),
        added=added,
        replaced=replaced,
        positives={
            category: int(labels[:, c].sum()) for c, category in enumerate(config.categories)
        },
        file_bytes=(out / NEIGHBOURS_FILE).stat().st_size,
        thresholds=thresholds,
    )
