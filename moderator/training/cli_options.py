"""Options and helpers shared by the training commands (`moderator train`, `moderator eval`,
`moderator neighbours add`): the data set mapping, the embedding cache, progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()

Preset = Annotated[
    str | None, typer.Option(help="Field mapping preset: hateful-memes (default) or davidson.")
]
TextField = Annotated[str | None, typer.Option(help="Field holding the caption.")]
TextSource = Annotated[
    str | None,
    typer.Option(
        help="What the text field holds: image_text (a meme's overlaid text; hateful-memes "
        "preset) or caption (davidson preset). Image-text models are served OCR'd image text."
    ),
]
ImageField = Annotated[
    str | None, typer.Option(help="Field holding the image path; 'none' for caption-only data.")
]
LabelField = Annotated[
    list[str] | None,
    typer.Option(help="Label field; repeat for one field per category. A list value is fine."),
]
LabelMap = Annotated[
    list[str] | None,
    typer.Option(help="VALUE=CAT[,CAT...] (VALUE= for a negative); repeatable."),
]
Category = Annotated[list[str] | None, typer.Option(help="Category names, in order; repeatable.")]
ImageRoot = Annotated[Path | None, typer.Option(help="Folder image paths are relative to.")]
CacheDir = Annotated[
    Path | None,
    typer.Option(help="Embedding cache; default $MODERATOR_CACHE_DIR or ~/.cache/moderator."),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Recompute embeddings.")]
Limit = Annotated[int | None, typer.Option(help="Use a seeded stratified sample of N rows.")]
Seed = Annotated[int, typer.Option(help="Seed of the split, the sample and the training.")]
ValFraction = Annotated[float, typer.Option(help="Share of rows for validation.")]
TestFraction = Annotated[float, typer.Option(help="Share of rows held out for the test report.")]
TargetPrecision = Annotated[
    float, typer.Option(help="Suggest the lowest threshold reaching this precision.")
]
TrainDevice = Annotated[
    str, typer.Option(help="auto (CUDA when torch sees one, else CPU) | cpu | cuda | cuda:N.")
]


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def dataset_spec(
    preset: str | None,
    text_field: str | None,
    image_field: str | None,
    label_field: list[str] | None,
    label_map: list[str] | None,
    category: list[str] | None,
    image_root: Path | None,
) -> Any:
    """A DatasetSpec: the preset's mapping with every given option replacing its field."""
    from moderator.training.dataset import PRESETS

    base = PRESETS.get(preset or "hateful-memes")
    if base is None:
        raise typer.BadParameter(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    changes: dict[str, Any] = {}
    if text_field:
        changes["text_field"] = text_field
    if image_field:
        changes["image_field"] = None if image_field.lower() == "none" else image_field
    if label_field:
        changes["label_fields"] = label_field
        changes["categories"] = None  # derived from the new fields unless given
        changes["label_map"] = {}
    if label_map:
        changes["label_map"] = dict(parse_label_map(item) for item in label_map)
        if not category:
            changes["categories"] = None
    if category:
        changes["categories"] = category
    if image_root:
        changes["image_root"] = image_root
    return type(base).model_validate({**base.model_dump(), **changes})


def parse_label_map(item: str) -> tuple[str, list[str]]:
    value, sep, names = item.partition("=")
    if not sep or not value:
        raise typer.BadParameter(f"--label-map {item!r}: expected VALUE=CAT[,CAT...]")
    return value.strip(), [n.strip() for n in names.split(",") if n.strip()]


def resolve_cache(cache_dir: Path | None, no_cache: bool) -> Path | None:
    from moderator.training.embedding_cache import default_cache_dir

    return None if no_cache else cache_dir or default_cache_dir()
