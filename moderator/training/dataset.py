"""Training data: JSONL or CSV rows → examples (caption, optional image, multi-hot labels).

The default field mapping reads the Hateful Memes layout as is: {"id", "img", "label", "text"}
with label 1 → category "hate". Other layouts name their text, image and label fields; labels
come from one field (a scalar, or a list of values) or several (one per category), optionally
through a mapping of label values to categories. Rows without an image train the caption side.
"""

from __future__ import annotations

import csv
import html
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from moderator.training.errors import TrainingDataError

logger = logging.getLogger(__name__)

TRUE_STRINGS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_STRINGS = frozenset({"0", "false", "no", "n", "f", ""})


class DatasetSpec(BaseModel):
    """How to read one data file; defaults fit the Hateful Memes JSONL layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_field: str = "text"
    text_source: Literal["caption", "image_text"] = Field(
        default="image_text",
        description="what text_field holds: the post's caption, or the text inside its image "
        "(a meme's overlaid text). A model trained on image text is served the text OCR reads "
        "from each image, joined to the caption (moderator.text.model_text)",
    )
    image_field: str | None = Field(default="img", description="None: a caption-only data set")
    video_field: str | None = Field(
        default="video", description="field holding a video file's path (#14); None: none"
    )
    frames_field: str | None = Field(
        default="frames",
        description="field holding a folder of frame images, read in name order (#14)",
    )
    label_fields: list[str] = Field(default_factory=lambda: ["label"], min_length=1)
    categories: list[str] | None = Field(
        default_factory=lambda: ["hate"], description="None: derived from the mapping or data"
    )
    label_map: dict[str, list[str]] = Field(
        default_factory=dict, description="label value → categories ([] for a negative)"
    )
    image_root: Path | None = Field(default=None, description="None: the data file's folder")
    format: Literal["auto", "jsonl", "csv"] = "auto"
    unescape_html: bool = Field(default=False, description="turn &amp; etc. into characters")

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError("categories has duplicates")
        if self.label_map and self.categories is not None:
            unknown = sorted(
                {c for cats in self.label_map.values() for c in cats} - set(self.categories)
            )
            if unknown:
                raise ValueError(f"label_map names categories not in categories: {unknown}")
        return self


PRESETS: dict[str, DatasetSpec] = {
    "hateful-memes": DatasetSpec(),
    # Davidson et al. 2017: class 0 hate speech, 1 offensive language, 2 neither. Hate speech is
    # offensive too, so "offensive" means offensive-or-hate and "hate" means hate vs the rest.
    "davidson": DatasetSpec(
        text_field="tweet",
        text_source="caption",
        image_field=None,
        label_fields=["class"],
        categories=["hate", "offensive"],
        label_map={"0": ["hate", "offensive"], "1": ["offensive"], "2": []},
        unescape_html=True,
    ),
}


@dataclass(frozen=True)
class Example:
    text: str
    image: Path | None
    labels: np.ndarray  # float32 [C] of 0/1
    line: int
    video: Path | None = None
    frames: Path | None = None  # a folder of frame images

    @property
    def has_frames(self) -> bool:
        """A video or a frame folder: trained by moderator/training/frames.py."""
        return self.video is not None or self.frames is not None


@dataclass(frozen=True)
class Dataset:
    path: Path
    categories: list[str]
    examples: list[Example]

    def labels(self) -> np.ndarray:
        if not self.examples:
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        return np.stack([e.labels for e in self.examples])

    def subset(self, indices: np.ndarray) -> Dataset:
        return Dataset(self.path, self.categories, [self.examples[i] for i in indices])


def read_dataset(path: Path, spec: DatasetSpec) -> Dataset:
    """Read and validate every row; errors name the file, line and field."""
    rows = list(_read_rows(path, spec))
    categories = spec.categories or _derive_categories(path, rows, spec)
    root = spec.image_root or path.parent
    examples = [_example(path, line, row, spec, categories, root) for line, row in rows]
    missing = [e for e in examples if e.image is not None and not e.image.is_file()]
    _check_frame_paths(path, examples)
    if missing:
        sample = ", ".join(f"line {e.line}: {e.image}" for e in missing[:3])
        raise TrainingDataError(
            f"{path}: {len(missing)} image files do not exist ({sample}); "
            "set --image-root to the folder the image paths are relative to"
        )
    if not examples:
        raise TrainingDataError(f"{path}: no rows")
    logger.info("read %d examples from %s, categories %s", len(examples), path, categories)
    return Dataset(path, categories, examples)


def _check_frame_paths(path: Path, examples: list[Example]) -> None:
    """Every video is a file and every frame folder a folder, or the error names the rows."""
    wrong = [
        f"line {e.line}: {p}"
        for e in examples
        for p, ok in ((e.video, Path.is_file), (e.frames, Path.is_dir))
        if p is not None and not ok(p)
    ]
    if wrong:
        raise TrainingDataError(
            f"{path}: {len(wrong)} video files or frame folders do not exist "
            f"({', '.join(wrong[:3])}); paths are relative to the data file's folder "
            "(or --image-root)"
        )


def _read_rows(path: Path, spec: DatasetSpec) -> Iterator[tuple[int, dict[str, Any]]]:
    fmt = spec.format
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"
    try:
        with path.open(encoding="utf-8", newline="") as f:
            if fmt == "csv":
                reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
                for row in reader:
                    yield reader.line_num, row
                return
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise TrainingDataError(f"{path}:{line}: invalid JSON: {e.msg}") from e
                if not isinstance(row, dict):
                    raise TrainingDataError(f"{path}:{line}: expected a JSON object per line")
                yield line, row
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingDataError(f"cannot read {path}: {e}") from e


def _key(value: Any) -> str:
    """Canonical text of a label value: True/1/1.0/"1" → "1"."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _values(row: dict[str, Any], field: str, where: str) -> list[Any]:
    if field not in row:
        raise TrainingDataError(f"{where}: field {field!r} missing (fields: {sorted(row)})")
    value = row[field]
    return list(value) if isinstance(value, list) else [value]


def _derive_categories(
    path: Path, rows: list[tuple[int, dict[str, Any]]], spec: DatasetSpec
) -> list[str]:
    if spec.label_map:
        seen = dict.fromkeys(c for cats in spec.label_map.values() for c in cats)
        return list(seen)
    if len(spec.label_fields) > 1:
        return list(spec.label_fields)
    field = spec.label_fields[0]
    names = (
        {_key(v) for line, row in rows for v in _values(row, field, f"{path}:{line}")}
        - TRUE_STRINGS
        - FALSE_STRINGS
    )
    return sorted(names) if names else [field]


def _truthy(value: Any, where: str) -> bool:
    key = _key(value).lower()
    if key in TRUE_STRINGS:
        return True
    if key in FALSE_STRINGS:
        return False
    try:
        return float(key) > 0
    except ValueError:
        raise TrainingDataError(
            f"{where}: label {value!r} is not 0/1, true/false or a number"
        ) from None


def _labels(
    row: dict[str, Any], spec: DatasetSpec, categories: list[str], where: str
) -> np.ndarray:
    labels = np.zeros(len(categories), dtype=np.float32)
    index = {c: i for i, c in enumerate(categories)}
    if len(spec.label_fields) > 1 and not spec.label_map:
        if len(categories) != len(spec.label_fields):
            raise TrainingDataError(
                f"{where}: {len(spec.label_fields)} label fields need as many categories, "
                f"got {categories}"
            )
        for i, field in enumerate(spec.label_fields):
            values = _values(row, field, where)
            labels[i] = float(any(_truthy(v, f"{where}: field {field!r}") for v in values))
        return labels
    for field in spec.label_fields:
        for value in _values(row, field, where):
            key = _key(value)
            if spec.label_map:
                if key not in spec.label_map:
                    raise TrainingDataError(
                        f"{where}: field {field!r}: value {value!r} is not in the label map "
                        f"({sorted(spec.label_map)})"
                    )
                names = spec.label_map[key]
            elif key in index:
                names = [key]
            elif len(categories) == 1:
                names = categories if _truthy(value, f"{where}: field {field!r}") else []
            else:
                raise TrainingDataError(
                    f"{where}: field {field!r}: value {value!r} is no category of {categories}; "
                    "give a label map"
                )
            for name in names:
                labels[index[name]] = 1.0
    return labels


def _example(
    path: Path,
    line: int,
    row: dict[str, Any],
    spec: DatasetSpec,
    categories: list[str],
    root: Path,
) -> Example:
    where = f"{path}:{line}"
    text = row.get(spec.text_field)
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TrainingDataError(f"{where}: field {spec.text_field!r} must be text, got {text!r}")
    if spec.unescape_html:
        text = html.unescape(text)
    image: Path | None = None
    if spec.image_field is not None:
        value = row.get(spec.image_field)
        if value not in (None, ""):
            image = Path(str(value))
            image = image if image.is_absolute() else root / image
    video = _path_field(row, spec.video_field, root, where)
    frames = _path_field(row, spec.frames_field, root, where)
    if not text.strip() and image is None and video is None and frames is None:
        raise TrainingDataError(f"{where}: neither a caption nor an image")
    return Example(text, image, _labels(row, spec, categories, where), line, video, frames)


def _path_field(row: dict[str, Any], field: str | None, root: Path, where: str) -> Path | None:
    """A path field (video, frames) resolved against `root`; None when absent or empty."""
    value = row.get(field) if field is not None else None
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TrainingDataError(f"{where}: field {field!r} must be a path, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else root / path


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Seeded split into train/val/test, stratified by label combination.

    Depends only on the labels, the fractions and the seed, so `moderator eval` can rebuild the
    held-out split that `moderator train` used.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be ≥ 0 and sum to less than 1")
    rng = np.random.default_rng(seed)
    keys = np.array(["".join("1" if x else "0" for x in row) for row in labels > 0.5])
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for key in sorted(set(keys.tolist())):
        members = np.flatnonzero(keys == key)
        rng.shuffle(members)
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {
        name: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
        for name, chunks in parts.items()
    }


def sample_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """A seeded, stratified sample of `limit` rows (all rows when limit ≥ their count)."""
    if limit >= len(labels):
        return np.arange(len(labels))
    fraction = limit / len(labels)
    split = split_indices(labels, 0.0, 1.0 - fraction, seed)
    return split["train"]


def limit_rows(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """The data set after --limit: a seeded, stratified sample of `limit` rows (None: all).

    `moderator train` and `moderator eval` both apply --limit through here before splitting, so
    eval with the same limit, fractions and seed rebuilds the split training held out.
    """
    if limit is None:
        return dataset
    return dataset.subset(sample_indices(dataset.labels(), limit, seed))
