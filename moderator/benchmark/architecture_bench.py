"""Posts per second of each checkpoint kind, from pixels and from cached features.

    .venv/bin/python -m moderator.benchmark.architecture_bench [--checkpoint DIR ...]
        [--posts 256] [--batch 32] [--threads 2] [--json FILE]

For every checkpoint (default: the packaged starter), posts that each have a caption and an
image are scored through the serving interface in batches:

- **from pixels**: embed_images + embed_texts + score, what a post costs the first time (with
  a model trained on object tags, the tagging too);
- **cached**: score alone on features computed beforehand, what a repost costs when the
  worker's feature cache holds both (for a fusion model that is a small head; a single-stream
  or two-stream model runs its whole transformer here).

Same generated images and captions for every checkpoint, measured one after another in this
process, so the ratios between rows hold even on a shared machine. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from moderator.benchmark.model_bench import images
from moderator.model import load_model
from moderator.model.checkpoint import starter_checkpoint_dir
from moderator.model.object_tags import object_tagger


def stored_parameters(directory: Path) -> int:
    """Values in the checkpoint's own safetensors files, subdirectories included (encoders
    from packages are not counted)."""
    total = 0
    for path in sorted(directory.rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += int(np.prod(handle.get_slice(key).get_shape()))
    return total


def measure(checkpoint: Path, posts: int, batch: int) -> dict[str, Any]:
    model = load_model(checkpoint)
    pixels = images(posts, model.image_size)
    captions = [f"caption number {i} about a day out with friends" for i in range(posts)]
    flags = np.ones(posts, bool)
    spans = [slice(i, i + batch) for i in range(0, posts, batch)]

    tagger = object_tagger(model)

    def from_pixels(span: slice) -> tuple[np.ndarray, np.ndarray]:
        image = model.embed_images(pixels[span])
        texts = captions[span]
        if tagger is not None:  # as the replica does (moderator.serving.scoring)
            texts = tagger.tag_texts(texts, image, flags[span])
        text = model.embed_texts(texts)
        model.score(text, flags[span], image, flags[span])
        return text, image

    from_pixels(spans[0])  # warm-up
    started = time.perf_counter()
    features = [from_pixels(span) for span in spans]
    pixel_s = time.perf_counter() - started
    started = time.perf_counter()
    for span, (text, image) in zip(spans, features, strict=True):
        model.score(text, flags[span], image, flags[span])
    cached_s = time.perf_counter() - started
    kind = json.loads((checkpoint / "config.json").read_text())["kind"]
    return {
        "checkpoint": str(checkpoint),
        "kind": kind,
        "model_version": model.model_version,
        "stored_parameters": stored_parameters(checkpoint),
        "image_feature_values": int(model.image_embedding_dim),
        "posts_per_s_from_pixels": round(posts / pixel_s, 1),
        "posts_per_s_cached": round(posts / cached_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", default=None)
    parser.add_argument("--posts", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        measure(c, args.posts, args.batch) for c in args.checkpoint or [starter_checkpoint_dir()]
    ]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
