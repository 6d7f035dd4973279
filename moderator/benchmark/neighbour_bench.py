"""What the kNN vote (moderator/model/neighbour_vote.py) costs a repost's scoring, by the number
of stored examples.

    .venv/bin/python -m moderator.benchmark.neighbour_bench CHECKPOINT [--posts 2048]
        [--batch 32] [--examples 3000 30000 300000] [--threads 2] [--rounds 5]

CHECKPOINT is a fusion checkpoint. Posts are random embeddings scored in batches through
`score_embeddings`, the head alone against the head plus the vote over E random unit-length
examples (same head, same posts, in this process; rounds alternate and the median counts), so
the ratio holds on a shared machine. Also prints the examples file's size per E (fp16 features
and uint8 labels). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from moderator.model import load_model
from moderator.model.fusion_model import FusionModerationModel, fused_dim
from moderator.model.neighbour_vote import NeighbourVote, NeighbourVoteConfig


def posts_per_s(model: FusionModerationModel, posts: int, batch: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(posts, model.text_embedding_dim)).astype(np.float32)
    image = rng.normal(size=(posts, model.image_embedding_dim)).astype(np.float32)
    has_image = np.ones(posts, dtype=bool)
    started = time.perf_counter()
    for start in range(0, posts, batch):
        rows = slice(start, start + batch)
        model.score_embeddings(text[rows], image[rows], has_image[rows])
    return posts / (time.perf_counter() - started)


def random_examples(examples: int, dim: int, categories: int, k: int) -> NeighbourVote:
    generator = torch.Generator().manual_seed(examples)
    features = torch.randn(examples, dim, generator=generator).half()
    labels = (torch.rand(examples, categories, generator=generator) > 0.5).float()
    config = NeighbourVoteConfig(k=k, examples=examples)
    return NeighbourVote(config, features, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--posts", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--examples", type=int, nargs="+", default=[3000, 30000, 300000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    if not isinstance(model, FusionModerationModel):
        raise SystemExit(f"{args.checkpoint}: the kNN vote needs a fusion checkpoint")
    dim, categories = fused_dim(model.head, model.config), len(model.config.categories)
    for examples in args.examples:
        vote = random_examples(examples, dim, categories, k=10)
        head_only, with_vote = [], []
        for round_ in range(args.rounds):
            model.neighbours = None
            head_only.append(posts_per_s(model, args.posts, args.batch, round_))
            model.neighbours = vote
            with_vote.append(posts_per_s(model, args.posts, args.batch, round_))
        head, blended = statistics.median(head_only), statistics.median(with_vote)
        row = {
            "examples": examples,
            "file_bytes": sum(t.numel() * t.element_size() for t in vote.tensors().values()),
            "posts_per_s_head": round(head, 1),
            "posts_per_s_head_and_vote": round(blended, 1),
            "ratio": round(blended / head, 3),
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()
