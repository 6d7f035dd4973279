"""`moderator train --architecture visualbert | lxmert`: the single-stream (VisualBERT,
moderator/model/single_stream.py) or two-stream (LXMERT, moderator/model/two_stream.py)
classifier, trained end to end over frozen grid features. Both read the same inputs (token ids
and grid cells), so everything here serves both; only building and saving differ by kind.

The image encoder stays frozen, so its grid features are computed once and cached on disk as
float16 (safetensors, keyed like the pooled embeddings: grid, backbone and data fingerprints;
grid² x 1280 x 2 bytes per image: 125,440 at the default 7x7). The transformer and the new
parts train together with AdamW: the copied MiniLM weights at `--encoder-learning-rate`, the
new ones (each classifier's NEW_PREFIXES: VisualBERT's projection, cell positions and
classifier; LXMERT's visual feature encoder, visual and cross-modality layers and classifier)
at `--learning-rate`, for `--stage2-epochs` epochs of `--stage2-batch-size` rows; the epoch
with the best validation AUROC is kept. The report has the same shape as the fusion model's.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from moderator.model.checkpoint_files import checkpoint_version, read_config
from moderator.model.single_stream import (
    GridImageEncoder,
    SingleStreamClassifier,
    SingleStreamSpec,
    build_classifier,
    load_tokenizer,
    offline_grid_preprocessing,
    token_ids,
)
from moderator.model.single_stream_model import SingleStreamConfig, save_single_stream
from moderator.model.two_stream import TwoStreamClassifier, TwoStreamSpec
from moderator.model.two_stream import build_classifier as build_two_stream
from moderator.model.two_stream_model import TwoStreamConfig
from moderator.training.dataset import Dataset, DatasetSpec
from moderator.training.device import training_device
from moderator.training.embedding_cache import (
    IMAGE_BATCH,
    data_fingerprint,
    image_rows,
    load_pixels,
)
from moderator.training.errors import TrainingDataError
from moderator.training.metrics import mean_auroc
from moderator.training.report import choose_thresholds, finish_report
from moderator.training.splits import Splits, load_splits, provenance
from moderator.training.trainer import History, TrainConfig, pos_weight

logger = logging.getLogger(__name__)

GRID_FORMAT = "float16"

GridClassifier = SingleStreamClassifier | TwoStreamClassifier
# LXMERT's new cross-modality and visual layers (VisualBERT has none): at 1e-3 they stayed at
# chance on the generated two-modality task; 3e-4 learnt it in one run of three (docs/model.md).
NEW_LAYERS_LEARNING_RATE = 3e-4
GridArchitecture = SingleStreamSpec | TwoStreamSpec


@dataclass(frozen=True)
class Features:
    """Per example: token ids [N, L] (int64), grid features [N, V, 1280] (fp16), has_image."""

    ids: np.ndarray
    grid: np.ndarray
    has_image: np.ndarray

    def subset(self, rows: np.ndarray) -> Features:
        return Features(self.ids[rows], self.grid[rows], self.has_image[rows])


def grid_features(
    images: GridImageEncoder,
    dataset: Dataset,
    cache_dir: Path | None,
    size: int,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """fp16 grid features [N, grid², 1280] (zeros without an image) and has_image, cached."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(f"lite0-grid{images.grid}-{size}px".encode()).hexdigest()[:16]
        path = cache_dir / f"grid-{key}-{data_fingerprint(dataset)[:16]}.safetensors"
        if path.is_file():
            tensors = load_file(str(path))
            return tensors["grid"].numpy(), tensors["has_image"].numpy() > 0
    cells = images.grid * images.grid
    grid = np.zeros((len(dataset.examples), cells, images.dim // cells), dtype=np.float16)
    has_image = np.array([e.image is not None for e in dataset.examples])
    rows_of = image_rows(dataset)
    paths = sorted(rows_of)
    task = progress.add_task("grid features", total=len(paths)) if progress else None
    for start in range(0, len(paths), IMAGE_BATCH):
        chunk = paths[start : start + IMAGE_BATCH]
        flat = images.encode(np.stack([load_pixels(p, size) for p in chunk]))
        for p, row in zip(chunk, flat.reshape(len(chunk), cells, -1), strict=True):
            grid[rows_of[p]] = row.astype(np.float16)
        if progress and task is not None:
            progress.advance(task, len(chunk))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file(
            {
                "grid": torch.from_numpy(grid),
                "has_image": torch.from_numpy(has_image.astype(np.uint8)),
            },
            str(partial),
        )
        partial.replace(path)
    return grid, has_image


def predict(
    classifier: GridClassifier, features: Features, batch_size: int, device: torch.device
) -> np.ndarray:
    """Sigmoid scores [N, C] in eval mode."""
    classifier.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features.ids), batch_size):
            part = features.subset(np.arange(start, min(start + batch_size, len(features.ids))))
            out.append(torch.sigmoid(_logits(classifier, part, device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _logits(classifier: GridClassifier, part: Features, device: torch.device) -> torch.Tensor:
    logits: torch.Tensor = classifier(
        torch.from_numpy(part.ids).to(device),
        torch.from_numpy(part.grid.astype(np.float32)).to(device),
        torch.from_numpy(part.has_image).to(device),
    )
    return logits


def _parameter_groups(
    classifier: GridClassifier, config: TrainConfig, layers_learning_rate: float
) -> list[dict[str, Any]]:
    """Copied (pretrained) weights at the encoder rate; new ones at the head rate, new
    transformer layers at layers_learning_rate."""
    pretrained: list[torch.nn.Parameter] = []
    new: list[torch.nn.Parameter] = []
    layers: list[torch.nn.Parameter] = []
    for name, parameter in classifier.named_parameters():
        if name.startswith(classifier.NEW_PREFIXES):
            new.append(parameter)
        elif name.startswith(classifier.NEW_LAYER_PREFIXES):
            layers.append(parameter)
        else:
            pretrained.append(parameter)
    groups = [
        {"params": pretrained, "lr": config.encoder_learning_rate},
        {"params": new, "lr": config.learning_rate},
    ]
    return groups + ([{"params": layers, "lr": layers_learning_rate}] if layers else [])


def fit(
    classifier: GridClassifier,
    train: Features,
    train_labels: np.ndarray,
    val: Features,
    val_labels: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    progress: Progress | None = None,
    layers_learning_rate: float = NEW_LAYERS_LEARNING_RATE,
) -> History:
    """Train end to end; keeps the weights of the epoch with the best validation AUROC."""
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    classifier.to(device)
    optimiser = torch.optim.AdamW(
        _parameter_groups(classifier, config, layers_learning_rate),
        weight_decay=config.weight_decay,
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=pos_weight(train_labels, config.class_weighting).to(device)
    )
    history = History()
    best: dict[str, torch.Tensor] | None = None
    batch = config.stage2_batch_size
    steps = -(-len(train.ids) // batch)
    kind = "lxmert" if isinstance(classifier, TwoStreamClassifier) else "visualbert"
    task = progress.add_task(kind, total=config.stage2_epochs * steps) if progress else None
    for epoch in range(config.stage2_epochs):
        classifier.train()
        order = generator.permutation(len(train.ids))
        total = 0.0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            logits = _logits(classifier, train.subset(rows), device)
            target = torch.from_numpy(train_labels[rows]).float().to(device)
            loss = loss_fn(logits, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
            if progress and task is not None:
                progress.advance(task)
        scores = predict(classifier, val, batch * 2, device)
        val_loss = float(
            loss_fn(torch.logit(torch.from_numpy(scores).clamp(1e-6, 1 - 1e-6)).to(device),
                    torch.from_numpy(val_labels).float().to(device))
        )  # fmt: skip
        history.train_loss.append(total / len(order))
        history.val_loss.append(val_loss)
        history.val_auroc.append(mean_auroc(val_labels, scores))
        logger.info("epoch %d: val AUROC %.4f", epoch + 1, history.val_auroc[-1])
        if history.val_auroc[-1] >= max(history.val_auroc):
            history.best_epoch = epoch  # 0-based, as stage 1 and the plot count
            best = copy.deepcopy(classifier.state_dict())
    if best is not None:
        classifier.load_state_dict(best)
    return history


def features_of(
    dataset: Dataset, tokenizer: Any, spec: GridArchitecture, grid: np.ndarray, has: np.ndarray
) -> Features:
    ids = token_ids(tokenizer, [e.text for e in dataset.examples], spec.max_text_tokens)
    return Features(ids.astype(np.int64), grid, has)


def _refuse_frame_rows(*datasets: Dataset | None) -> None:
    """These models read one image per row: a row's video or frame folder would be dropped
    without a word, so it is refused, naming the rows."""
    for dataset in filter(None, datasets):
        rows = [e.line for e in dataset.examples if e.has_frames]
        if rows:
            raise TrainingDataError(
                f"{dataset.path}: {len(rows)} rows have a video or frame folder (lines "
                f"{', '.join(map(str, rows[:5]))}); --architecture visualbert and lxmert read "
                "one image per row: train them with --architecture fusion (--frame-pooling)"
            )


def run_single_stream(
    data: Path,
    spec: DatasetSpec,
    arch: GridArchitecture,
    config: TrainConfig,
    out: Path,
    report_dir: Path | None = None,
    val_data: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    image_size: int | None = None,
    layers_learning_rate: float = NEW_LAYERS_LEARNING_RATE,
) -> dict[str, Any]:
    """Train a VisualBERT (SingleStreamSpec) or LXMERT (TwoStreamSpec) checkpoint into `out`;
    report as `run_training` writes it.

    image_size: the side images are resized to (default 224, Lite0's; the feature map is
    image_size / 32 cells a side, pooled to the spec's grid). layers_learning_rate: LXMERT's
    new cross-modality and visual layers."""
    device = training_device(config.device)
    config = config.model_copy(update={"device": str(device)})
    splits = load_splits(data, spec, val_data, config, limit)
    _refuse_frame_rows(splits.dataset, splits.val_file)
    categories = splits.train.categories
    preprocessing = offline_grid_preprocessing(image_size or 224)
    size = preprocessing.image_size
    images = GridImageEncoder(arch.grid)
    images.to(device)
    tokenizer = load_tokenizer(arch)
    grid, has = grid_features(images, splits.dataset, cache_dir, size, progress)
    whole = features_of(splits.dataset, tokenizer, arch, grid, has)
    if splits.val_file is not None:
        grid, has = grid_features(images, splits.val_file, cache_dir, size, progress)
        val = features_of(splits.val_file, tokenizer, arch, grid, has)
    else:
        val = whole.subset(splits.parts["val"])
    # The new layers' initial weights come from the seed, not from whatever ran before.
    torch.manual_seed(config.seed)
    classifier: GridClassifier = (
        build_two_stream(arch, len(categories))
        if isinstance(arch, TwoStreamSpec)
        else build_classifier(arch, len(categories))
    )
    history = fit(
        classifier,
        whole.subset(splits.parts["train"]),
        splits.train.labels(),
        val,
        splits.val.labels(),
        config,
        device,
        progress,
        layers_learning_rate,
    )
    batch = config.stage2_batch_size * 2
    val_scores = predict(classifier, val, batch, device)
    thresholds, suggested = choose_thresholds(
        splits.val.labels(), val_scores, categories, config.target_precision
    )
    kind = "lxmert" if isinstance(arch, TwoStreamSpec) else "visualbert"
    # The fusion default name would mislabel this model's versions; a chosen name stays.
    fields: dict[str, Any] = {
        "name": kind if config.name == TrainConfig().name else config.name,
        "categories": categories,
        "spec": arch,
        "preprocessing": preprocessing,
        "reads_image_text": spec.text_source == "image_text",
        "thresholds": thresholds,
        "training": _provenance(data, splits, config, history),
    }
    if isinstance(arch, TwoStreamSpec):
        fields["training"]["new_layers_learning_rate"] = layers_learning_rate
    saved: SingleStreamConfig | TwoStreamConfig
    if isinstance(arch, TwoStreamSpec):
        save_single_stream(out, TwoStreamConfig.model_validate(fields), classifier.cpu())
        saved = read_config(TwoStreamConfig, out)
    else:
        save_single_stream(out, SingleStreamConfig.model_validate(fields), classifier.cpu())
        saved = read_config(SingleStreamConfig, out)
    report: dict[str, Any] = {
        "model_version": checkpoint_version(saved.name, out, saved),
        "checkpoint": str(out),
        "architecture": kind,
        "parameters": sum(p.numel() for p in classifier.parameters()),
        "spec": arch.model_dump(),
        "device": str(device),
        "grid_bytes_per_image": arch.visual_tokens * arch.visual_dim * 2,
    }
    test_rows = splits.parts["test"]
    return finish_report(
        report,
        splits,
        val_scores,
        lambda _test: predict(classifier, whole.subset(test_rows), batch, device),
        thresholds,
        suggested,
        config,
        history,
        report_dir or out / "report",
    )


def _provenance(
    data: Path, splits: Splits, config: TrainConfig, history: History
) -> dict[str, Any]:
    """The fusion runs' provenance, with this model's own optimiser settings."""
    common = provenance(data, splits, config, history.best_epoch, len(history.val_auroc))
    common.pop("stage2")  # trained end to end by construction
    return {
        **common,
        "learning_rate": config.learning_rate,
        "encoder_learning_rate": config.encoder_learning_rate,
        "batch_size": config.stage2_batch_size,
    }
