"""Served vs trained pooled scores of a frame-attention checkpoint on its video rows (#14).

    .venv/bin/python -m tests.frame_attention_roundtrip CKPT DATA.jsonl [--cache-dir DIR]

Each video row is decoded by the worker (decode_post), scored as a replica scores it
(build_request → score_request, frame logits included) and pooled by pool_frames; training's
predict_pooled pools the same rows from frame_embeddings. Prints the largest difference.
Lives in tests/ because it drives the worker's code (the library never imports workers/).
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import numpy as np
import orjson

from moderator.config import DecodeLimits
from moderator.ingest import decode_post
from moderator.media_settings import MediaLimits
from moderator.model import load_model
from moderator.model.fusion_model import FusionModerationModel
from moderator.serving.scoring import score_request
from moderator.signals.embeddings import model_embeddings
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.training.frame_training import predict_pooled
from moderator.training.frames import frame_embeddings
from moderator.training.trainer import TrainConfig
from workers.features import build_request, pool_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--category", default="harmful")
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    model = load_model(args.checkpoint)
    assert isinstance(model, FusionModerationModel) and model.frame_attention is not None
    dataset = read_dataset(
        args.data, DatasetSpec(categories=[args.category], text_source="caption")
    )
    rows = [i for i, e in enumerate(dataset.examples) if e.video is not None][: args.posts]
    limits = DecodeLimits(media=MediaLimits(pooling="attention"))
    posts = []
    for i in rows:
        example = dataset.examples[i]
        assert example.video is not None
        record = {
            "post_id": str(i),
            "author_id": "a",
            "created_at": "2026-06-01T00:00:00Z",
            "caption": example.text,
            "video_b64": base64.b64encode(example.video.read_bytes()).decode(),
        }
        posts.append(decode_post(orjson.dumps(record), limits, model.image_size))
    built = build_request(posts, None, model_embeddings(model), model.image_size)
    response = score_request(model, built.request)
    served, _ = pool_frames(posts, response.scores, response.frame_logits)
    embeddings = frame_embeddings(model.backbone, dataset, args.cache_dir).subset(np.array(rows))
    config = TrainConfig(modalities=model.config.modalities)
    trained = predict_pooled(model.head, model.frame_attention, embeddings, config, "attention")
    print(
        f"{model.model_version}: {len(rows)} posts, {len(built.request)} rows; "
        f"max |served - trained| = {float(np.abs(served - trained).max()):.2g}"
    )


if __name__ == "__main__":
    main()
