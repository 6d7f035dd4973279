"""Inference options: speed-up and AUROC change of each precision against fp32, on one device.

    .venv/bin/python -m moderator.benchmark.model_bench [--checkpoint DIR] [--captions 1000]
        [--images 64] [--device cpu|cuda|cuda:N|auto] [--precisions fp32,fp16,bf16]
        [--tf32] [--compile]

Defaults: the CPU and every precision it runs (fp32, bf16, int8); on CUDA: fp32, bf16, fp16.
fp32 on the same device is always measured, as the reference of the speed-ups and score changes.

Speed: captions/s through score() and images/s through embed_images(), same inputs for every
precision. Quality: per-category AUROC on a seeded sample of Davidson's held-out split (read
from ../shared/data/davidson; skipped when absent), and the largest score change vs fp32.
A benchmark, not a test: it prints a table and writes --json if given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moderator.model import load_model
from moderator.model.base import score_captions
from moderator.model.inference import (
    CPU_PRECISIONS,
    CUDA_PRECISIONS,
    PRECISIONS,
    InferenceOptions,
    resolve_device,
)
from moderator.training.dataset import PRESETS, read_dataset, sample_indices, split_indices
from moderator.training.metrics import auroc

DAVIDSON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davidson"


def held_out_captions(limit: int) -> tuple[list[str], np.ndarray, list[str]] | None:
    path = DAVIDSON / "labeled_data.csv"
    if not path.is_file():
        return None
    dataset = read_dataset(path, PRESETS["davidson"])
    test = dataset.subset(split_indices(dataset.labels(), 0.1, 0.1, seed=0)["test"])
    sample = test.subset(sample_indices(test.labels(), limit, seed=0))
    return [e.text for e in sample.examples], sample.labels(), sample.categories


def images(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size)
    base = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    return np.clip(base[None] + rng.normal(0, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)


def measure(
    checkpoint: str | None, options: InferenceOptions, captions: list[str], n_images: int
) -> dict[str, Any]:
    model = load_model(checkpoint, options)
    pixels = images(n_images, model.image_size)
    model.embed_images(pixels[:4])  # warm-up
    started = time.perf_counter()
    embeddings = model.embed_images(pixels)
    image_s = time.perf_counter() - started
    no_image = np.zeros((len(captions), model.image_embedding_dim), np.float32)
    flags = np.zeros(len(captions), bool)
    score_captions(model, captions[:8], no_image[:8], flags[:8])
    started = time.perf_counter()
    scores = np.concatenate(
        [
            score_captions(model, captions[i : i + 64], no_image[i : i + 64], flags[i : i + 64])
            for i in range(0, len(captions), 64)
        ]
    )
    caption_s = time.perf_counter() - started
    return {
        "model_version": model.model_version,
        "categories": model.categories,
        "images_per_s": n_images / image_s,
        "captions_per_s": len(captions) / caption_s,
        "scores": scores,
        "embeddings": embeddings,
    }


def precisions_for(device: str, requested: str | None) -> list[Any]:
    """The precisions to measure on device, fp32 first (the reference)."""
    runnable = CUDA_PRECISIONS if device.startswith("cuda") else CPU_PRECISIONS
    if requested is None:
        return [p for p in PRECISIONS if p in runnable]
    chosen = [p.strip() for p in requested.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in runnable]
    if unknown:
        raise SystemExit(f"--precisions {unknown} do not run on {device}; choose from {runnable}")
    return ["fp32", *[p for p in chosen if p != "fp32"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint dir (default: starter)")
    parser.add_argument("--captions", type=int, default=1000)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--precisions", default=None, help=f"comma-separated, of {PRECISIONS}")
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 matmuls/convolutions")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, num_gpus=torch.cuda.device_count())
    precisions = precisions_for(device, args.precisions)
    held_out = held_out_captions(args.captions)
    if held_out is None:
        print(f"{DAVIDSON} absent: speed only, on generated captions")
        captions = [f"caption number {i} about a day out" for i in range(args.captions)]
        labels, label_names = None, list[str]()
    else:
        captions, labels, label_names = held_out
    results = {
        p: measure(
            args.checkpoint,
            InferenceOptions(p, device=device, tf32=args.tf32, compile=args.compile),
            captions,
            args.images,
        )
        for p in precisions
    }
    reference = results["fp32"]
    rows = []
    for precision, result in results.items():
        row: dict[str, Any] = {
            "precision": precision,
            "model_version": result["model_version"],
            "captions_per_s": round(result["captions_per_s"], 1),
            "images_per_s": round(result["images_per_s"], 1),
            "caption_speedup": round(result["captions_per_s"] / reference["captions_per_s"], 2),
            "image_speedup": round(result["images_per_s"] / reference["images_per_s"], 2),
            "max_score_change": float(np.abs(result["scores"] - reference["scores"]).max()),
        }
        if labels is not None:
            for c, name in enumerate(label_names):
                column = result["categories"].index(name)
                value = auroc(labels[:, c], result["scores"][:, column])
                row[f"auroc_{name}"] = None if value is None else round(value, 4)
        rows.append(row)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
