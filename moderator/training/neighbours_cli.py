"""`moderator neighbours add`: labelled examples join a fusion checkpoint's kNN vote without
retraining (moderator/training/neighbours.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from moderator.training.cli_options import (
    CacheDir,
    Category,
    ImageField,
    ImageRoot,
    LabelField,
    LabelMap,
    NoCache,
    Preset,
    TextField,
    TextSource,
    console,
    dataset_spec,
    progress_bar,
    resolve_cache,
)

neighbours_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The kNN vote's labelled examples in a fusion checkpoint (docs/model.md).",
)


@neighbours_app.command("add")
def add(
    checkpoint: Annotated[Path, typer.Argument(help="Fusion checkpoint directory.")],
    data: Annotated[Path, typer.Argument(help="JSONL or CSV of labelled posts.")],
    out: Annotated[Path, typer.Option(help="New checkpoint directory to write.")],
    val_data: Annotated[
        Path | None,
        typer.Option(help="Choose the thresholds again on this labelled file (else kept)."),
    ] = None,
    preset: Preset = None,
    text_field: TextField = None,
    text_source: TextSource = None,
    image_field: ImageField = None,
    label_field: LabelField = None,
    label_map: LabelMap = None,
    category: Category = None,
    image_root: ImageRoot = None,
    weight: Annotated[
        float | None, typer.Option(help="The vote's share (default: the checkpoint's, or 0.5).")
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Voters (default: the checkpoint's, or 10).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Vote temperature (default: the checkpoint's, or 0.1).")
    ] = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
) -> None:
    """Copy CHECKPOINT to OUT with DATA's rows added to its kNN vote (a new model version): new
    labelled posts, for example reviewers' verdicts, change scores without retraining."""
    from pydantic import ValidationError

    from moderator.model import load_model
    from moderator.model.errors import ModelLoadError
    from moderator.model.fusion_model import FusionModerationModel
    from moderator.training.dataset import Dataset, read_dataset
    from moderator.training.embedding_cache import (
        Embeddings,
        cached_embeddings,
        compute_embeddings,
    )
    from moderator.training.errors import TrainingDataError
    from moderator.training.neighbours import add_examples

    try:
        model: Any = load_model(checkpoint)
        if not isinstance(model, FusionModerationModel):
            raise TrainingDataError(
                f"{checkpoint}: the kNN vote needs a fusion checkpoint (moderator train), "
                f"not {type(model).__name__}"
            )
        spec = dataset_spec(
            preset, text_field, image_field, label_field, label_map, category, image_root
        )
        source = text_source or spec.text_source
        if (source == "image_text") != model.reads_image_text:
            reads = "caption and image text" if model.reads_image_text else "captions"
            raise TrainingDataError(
                f"--text-source {source}: {model.model_version} was trained on {reads}; "
                "examples must be embedded the same way"
            )
        spec = spec.model_copy(
            update={"text_source": source, "categories": list(model.config.categories)}
        )
        dataset = read_dataset(data, spec)
        validation = read_dataset(val_data, spec) if val_data is not None else None
        cache = resolve_cache(cache_dir, no_cache)
        with progress_bar() as progress:

            def embed(rows: Dataset) -> Embeddings:
                # Fine-tuned encoders (stage 2) are not what the embedding cache is keyed on.
                if model.config.backbone_weights is not None:
                    return compute_embeddings(model.backbone, rows, progress)
                return cached_embeddings(model.backbone, rows, cache, progress, model.tagger)

            embeddings = embed(dataset)
            validated = None if validation is None else (validation, embed(validation))
        vote = {"weight": weight, "k": k, "temperature": temperature}
        added = add_examples(model, checkpoint, dataset, embeddings, out, vote, validated)
    except (
        TrainingDataError,
        ModelLoadError,
        ValidationError,
        ValueError,
        FileExistsError,
    ) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    table = Table(title=f"kNN examples of {added.model_version}", show_header=False)
    table.add_row("from", f"{model.model_version} ({added.before:,} examples)")
    table.add_row("added", f"{added.added:,} new, {added.replaced:,} replaced a stored label")
    for name, positives in added.positives.items():
        table.add_row(f"positive: {name}", f"{positives:,}")
    table.add_row("examples file", f"{added.file_bytes:,} bytes")
    before = model.config.thresholds
    for name, threshold in added.thresholds.items():
        was = before.get(name)
        change = "kept" if was == threshold else f"was {was}" if was is not None else "new"
        table.add_row(f"threshold: {name}", f"{threshold} ({change})")
    table.add_row("checkpoint", str(out))
    console.print(table)
