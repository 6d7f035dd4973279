"""`moderator eval`: any checkpoint (starter or fusion) on a labelled file, per category."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from moderator.model import load_model
from moderator.model.inference import InferenceOptions, Precision, resolve_device
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.training.errors import TrainingDataError
from moderator.training.report import (
    ROC_FILE,
    choose_thresholds,
    evaluate_scores,
    plot_roc,
    to_jsonable,
    write_json,
)
from moderator.training.run import scores_for, split_for_eval

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
