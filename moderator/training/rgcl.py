"""Retrieval-guided contrastive learning (RGCL) for stage 1.

After Mei et al. 2024, "Improving hateful meme detection through retrieval-guided contrastive
learning": the training set's fused representations (the input of the head's final linear
layer, `FusionHead.logits_and_features`) form an index, rebuilt at the start of every epoch
without dropout. For each example of a batch, the index gives a pseudo-gold positive (its
nearest neighbour with the same label vector, itself excluded) and hard negatives (its nearest
neighbours with another label vector); an InfoNCE loss over cosine similarities divided by a
temperature pulls the example towards the positive and away from the negatives. Gradients flow
through the batch's representations only: the index is a detached snapshot.

Exact search (one matrix product against the whole index) is cheap at a few thousand rows.
"""

from __future__ import annotations

import torch
from torch import nn

from moderator.model.fusion_heads import FusionHead


def label_groups(labels: torch.Tensor) -> torch.Tensor:
    """One integer per row, equal for rows with identical label vectors ([N, C] → [N])."""
    groups: torch.Tensor = torch.unique(labels, dim=0, return_inverse=True)[1]
    return groups


@torch.no_grad()
def build_index(
    head: FusionHead,
    text: torch.Tensor,
    image: torch.Tensor,
    has_image: torch.Tensor,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Unit-length fused representations [N, F] of every row, in eval mode (no dropout); the
    head is left in the mode it was in."""
    was_training = head.training
    head.eval()
    parts = [
        head.logits_and_features(
            text[start : start + batch_size],
            image[start : start + batch_size],
            has_image[start : start + batch_size],
        )[1]
        for start in range(0, len(text), batch_size)
    ]
    head.train(was_training)
    return nn.functional.normalize(torch.cat(parts), dim=1)


def retrieve(
    queries: torch.Tensor,
    rows: torch.Tensor,
    index: torch.Tensor,
    groups: torch.Tensor,
    negatives: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest same-label neighbour and `negatives` nearest other-label neighbours in `index`.

    queries [B, F] unit length (no gradient needed), rows [B] their own row in the index
    (excluded), groups [N] label groups of the index rows. Returns positive [B] (row numbers),
    has_positive [B] bool, negatives [B, K] (row numbers) and negative_valid [B, K] bool; K is
    `negatives` capped at N. Ties go to the lower row number, so the result is deterministic.
    """
    similarity = queries @ index.T
    same = groups[rows].unsqueeze(1) == groups.unsqueeze(0)
    own = torch.zeros_like(same)
    own[torch.arange(len(rows), device=rows.device), rows] = True
    minus_inf = torch.finfo(similarity.dtype).min
    positive_scores = similarity.masked_fill(~same | own, minus_inf)
    best, positive = positive_scores.max(dim=1)
    has_positive = best > minus_inf
    negative_scores = similarity.masked_fill(same, minus_inf)
    k = min(negatives, index.shape[0])
    top, negative = negative_scores.topk(k, dim=1)
    return positive, has_positive, negative, top > minus_inf


def rgcl_loss(
    features: torch.Tensor,
    rows: torch.Tensor,
    index: torch.Tensor,
    groups: torch.Tensor,
    negatives: int,
    temperature: float,
) -> torch.Tensor:
    """Mean InfoNCE loss of a batch's fused representations [B, F] against the index; rows
    without a same-label neighbour or without any other-label one do not count (0 if none)."""
    queries = nn.functional.normalize(features, dim=1)
    positive, has_positive, negative, negative_valid = retrieve(
        queries.detach(), rows, index, groups, negatives
    )
    usable = has_positive & negative_valid.any(dim=1)
    if not bool(usable.any()):
        return features.sum() * 0.0
    positive_logit = (queries * index[positive]).sum(dim=1, keepdim=True)
    negative_logits = torch.einsum("bf,bkf->bk", queries, index[negative])
    negative_logits = negative_logits.masked_fill(~negative_valid, -torch.inf)
    logits = torch.cat([positive_logit, negative_logits], dim=1) / temperature
    losses = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return losses[usable].mean()
