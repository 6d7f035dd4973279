"""`moderator eval`: any checkpoint (starter or fusion) on a labelled file, per category.

Also the evaluation helpers other tools reuse: split_for_eval (the rows of the split `moderator
train` made) and scores_for (a model's scores on them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from moderator.model import load_model
from moderator.model.base import score_captions
from moderator.model.fusion_model import FusionModerationModel
from moderator.model.inference import InferenceOptions, Precision, resolve_device
from moderator.training.dataset import (
    Dataset,
    DatasetSpec,
    limit_rows,
    read_dataset,
    split_indices,
)
from moderator.training.embedding_cache import cached_embeddings, load_pixels
from moderator.training.errors import TrainingDataError
from moderator.training.report import (
    ROC_FILE,
    choose_thresholds,
    evaluate_scores,
    plot_roc,
    to_jsonable,
    write_json,
)

logger = logging.getLogger(__name__)


def run_eval(
    checkpoint: Path,
    data: Path,
    spec: DatasetSpec,
    report_dir: Path,
    split: str = "all",
    precision: Precision = "fp32",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    target_precision: float = 0.9,
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score `data` (or one split of it) and write report.json and roc.png to report_dir.

    Thresholds are the checkpoint's own (chosen on its validation split) where it has them, else
    0.5; the suggested threshold for target_precision is fitted on this very set (in-sample).
    device: cpu, cuda[:N], or auto (CUDA when torch sees one).
    """
    resolved = resolve_device(device, num_gpus=torch.cuda.device_count())
    model: Any = load_model(checkpoint, InferenceOptions(precision, device=resolved))
    dataset = read_dataset(data, spec)
    unknown = sorted(set(dataset.categories) - set(model.categories))
    if unknown:
        raise TrainingDataError(
            f"{data}: categories {unknown} are not scored by {model.model_version} "
            f"(it scores {model.categories}); map the labels onto those with --label-map"
        )
    dataset, rows = split_for_eval(dataset, split, val_fraction, test_fraction, seed, limit)
    scores = scores_for(model, dataset, rows, cache_dir, progress)
    columns = [model.categories.index(c) for c in dataset.categories]
    scores = scores[:, columns]
    labels = dataset.labels() if rows is None else dataset.labels()[rows]
    config = getattr(model, "config", None)
    thresholds = dict(getattr(config, "thresholds", {}) or {})
    _, suggested = choose_thresholds(labels, scores, dataset.categories, target_precision)
    metrics = evaluate_scores(
        labels, scores, dataset.categories, thresholds, target_precision, suggested
    )
    report = {
        "model_version": model.model_version,
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": split,
        "rows": len(labels),
        "precision": precision,
        "metrics": metrics,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_roc(report_dir / ROC_FILE, labels, scores, dataset.categories)
    write_json(report_dir, report)
    return to_jsonable(report)


def split_for_eval(
    dataset: Dataset,
    split: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    limit: int | None,
) -> tuple[Dataset, np.ndarray | None]:
    """The data set after --limit and the rows of the split `moderator train` made with the same
    fractions, seed and limit (None: all rows)."""
    dataset = limit_rows(dataset, limit, seed)
    if split == "all":
        return dataset, None
    parts = split_indices(dataset.labels(), val_fraction, test_fraction, seed)
    if split not in parts:
        raise ValueError(f"split must be all, train, val or test; got {split!r}")
    return dataset, parts[split]


def scores_for(
    model: Any,
    dataset: Dataset,
    rows: np.ndarray | None,
    cache_dir: Path | None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Scores [rows, model categories] through the model's own API (any checkpoint kind).

    A fusion checkpoint on pretrained encoders at fp32 scores from cached embeddings of the
    whole file; any other model encodes the rows itself, as serving would.
    """
    if (
        isinstance(model, FusionModerationModel)
        and model.options.precision == "fp32"
        and model.config.backbone_weights is None
    ):
        embeddings = cached_embeddings(model.backbone, dataset, cache_dir, progress, model.tagger)
        if rows is not None:
            embeddings = embeddings.subset(rows)
        return model.score_embeddings(embeddings.text, embeddings.image, embeddings.has_image)
    examples = dataset.examples if rows is None else [dataset.examples[i] for i in rows]
    out = np.zeros((len(examples), len(model.categories)), dtype=np.float32)
    task = progress.add_task("scoring", total=len(examples)) if progress else None
    for start in range(0, len(examples), 64):
        chunk = examples[start : start + 64]
        has_image = np.array([e.image is not None for e in chunk])
        vectors = np.zeros((len(chunk), model.image_embedding_dim), dtype=np.float32)
        paths = [e.image for e in chunk if e.image is not None]
        if paths:
            pixels = np.stack([load_pixels(p, model.image_size) for p in paths])
            vectors[has_image] = model.embed_images(pixels)
        captions = [e.text for e in chunk]
        out[start : start + len(chunk)] = score_captions(model, captions, vectors, has_image)
        if progress and task is not None:
            progress.advance(task, len(chunk))
    return out
