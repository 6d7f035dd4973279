"""What a training run reads: the data set, its seeded splits, the modalities it can train, and
the provenance a checkpoint records about them. Shared by every architecture's training."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moderator.training.dataset import (
    Dataset,
    DatasetSpec,
    limit_rows,
    read_dataset,
    split_indices,
)
from moderator.training.errors import TrainingDataError
from moderator.training.trainer import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """The data set (after --limit) and the row indices of each split; val may be its own file."""

    dataset: Dataset
    parts: dict[str, np.ndarray]
    val_file: Dataset | None

    @property
    def train(self) -> Dataset:
        return self.dataset.subset(self.parts["train"])

    @property
    def val(self) -> Dataset:
        return self.val_file or self.dataset.subset(self.parts["val"])

    @property
    def test(self) -> Dataset | None:
        return self.dataset.subset(self.parts["test"]) if len(self.parts["test"]) else None


def load_splits(
    data: Path,
    spec: DatasetSpec,
    val_data: Path | None,
    config: TrainConfig,
    limit: int | None = None,
) -> Splits:
    """Seeded, stratified train/val/test; a separate validation file replaces the val split."""
    dataset = limit_rows(read_dataset(data, spec), limit, config.seed)
    val_fraction = 0.0 if val_data is not None else config.val_fraction
    parts = split_indices(dataset.labels(), val_fraction, config.test_fraction, config.seed)
    val_file = None
    if val_data is not None:
        val_spec = spec.model_copy(update={"categories": dataset.categories})
        val_file = read_dataset(val_data, val_spec)
    splits = Splits(dataset, parts, val_file)
    if not splits.val.examples:
        raise TrainingDataError(
            "the validation split is empty: raise --val-fraction or give --val-data"
        )
    return splits


def effective_modalities(config: TrainConfig, train: Dataset) -> TrainConfig:
    """A data set without any image can only train the caption side."""
    has_images = any(e.image is not None for e in train.examples)
    if has_images or config.modalities == "text":
        return config
    if config.modalities == "image":
        raise TrainingDataError("--modalities image, but no training row has an image")
    logger.info("no training row has an image: training the caption side only")
    return config.model_copy(update={"modalities": "text"})


def provenance(
    data: Path, splits: Splits, config: TrainConfig, best_epoch: int, epochs_run: int
) -> dict[str, Any]:
    """What the checkpoint was trained on; no timestamps: identical runs write identical files."""
    return {
        "data": data.name,
        "rows": {
            "train": len(splits.train.examples),
            "val": len(splits.val.examples),
            "test": len(splits.test.examples) if splits.test else 0,
        },
        "positives_train": dict(
            zip(
                splits.train.categories,
                splits.train.labels().sum(axis=0).astype(int).tolist(),
                strict=True,
            )
        ),
        "seed": config.seed,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "class_weighting": config.class_weighting,
        "stage2": config.unfreeze,
        **_options_on(config),
    }


def _options_on(config: TrainConfig) -> dict[str, Any]:
    """The optional training methods that are on, with their settings; only those, so runs
    without them write the files they always did."""
    sections: dict[str, tuple[bool, Any]] = {
        "rgcl": (
            config.rgcl_weight > 0,
            {
                "weight": config.rgcl_weight,
                "negatives": config.rgcl_negatives,
                "temperature": config.rgcl_temperature,
            },
        ),
        "knn_vote": (
            config.knn_vote_weight > 0,
            {
                "weight": config.knn_vote_weight,
                "k": config.knn_k,
                "temperature": config.knn_temperature,
            },
        ),
        "itc": (config.itc_weight > 0, {"weight": config.itc_weight}),
        "momentum_distillation": (
            config.distill_alpha > 0,
            {"alpha": config.distill_alpha, "momentum": config.momentum},
        ),
        "stage2_itc": (config.stage2_itc_weight > 0, {"weight": config.stage2_itc_weight}),
        "itm": (config.itm, True),
        "object_tags": (config.object_tags > 0, config.object_tags),
    }
    return {name: value for name, (on, value) in sections.items() if on}
