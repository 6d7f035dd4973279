"""`moderator train` and `moderator eval`: typer commands on `model_app`.

Mounted by moderator/cli.py with `app.registered_commands += model_app.registered_commands`
(both commands at the top level). Examples:

    moderator train data/train.jsonl --out checkpoints/memes --val-data data/dev.jsonl
    moderator train ../shared/data/davidson/labeled_data.csv --preset davidson --out ckpt
    moderator eval ckpt ../shared/data/davidson/labeled_data.csv --preset davidson --split test
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from moderator.errors import ModeratorError
from moderator.tables import print_table
from moderator.training.cli_options import (
    CacheDir,
    Category,
    ImageField,
    ImageRoot,
    LabelField,
    LabelMap,
    Limit,
    NoCache,
    Preset,
    Seed,
    TargetPrecision,
    TestFraction,
    TextField,
    TextSource,
    TrainDevice,
    ValFraction,
    console,
    dataset_spec,
    progress_bar,
    resolve_cache,
)
from moderator.training.train_options import (
    DistillAlpha,
    ItcWeight,
    KnnK,
    KnnTemperature,
    KnnVoteWeight,
    Momentum,
    ObjectTags,
    RgclNegatives,
    RgclTemperature,
    RgclWeight,
    Stage2ItcWeight,
)

if TYPE_CHECKING:
    from moderator.model.single_stream import SingleStreamSpec
    from moderator.model.two_stream import TwoStreamSpec
    from moderator.training.trainer import TrainConfig

model_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Model training.")
logger = logging.getLogger(__name__)


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    from moderator.training.report import metrics_table

    table = Table(title=title)
    for column in ("category", "n+", "AUROC", "AP", "F1", "acc", "ECE", "thr", "thr@P"):
        table.add_column(column)
    for row in metrics_table(metrics):
        table.add_row(*row)
    print_table(console, table)


@model_app.command()
def train(
    data: Annotated[Path, typer.Argument(help="JSONL or CSV training data.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    val_data: Annotated[Path | None, typer.Option(help="Validation file (else a split).")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Default: OUT/report.")] = None,
    preset: Preset = None,
    text_field: TextField = None,
    text_source: TextSource = None,
    image_field: ImageField = None,
    label_field: LabelField = None,
    label_map: LabelMap = None,
    category: Category = None,
    image_root: ImageRoot = None,
    backbone: Annotated[
        str,
        typer.Option(help="offline, clip:ID_OR_PATH or align:ID_OR_PATH; add @REVISION to pin."),
    ] = "offline",
    image_size: Annotated[
        int | None, typer.Option(help="Offline backbone only: input side (default 224).")
    ] = None,
    head: Annotated[str, typer.Option(help="cross | concat | late")] = "cross",
    hidden_dim: int = 256,
    projection_dim: int = 32,
    unimodal_terms: Annotated[
        bool, typer.Option(help="cross: append 1 to each projection before the product.")
    ] = True,
    with_embeddings: Annotated[
        bool, typer.Option(help="cross: the MLP also sees the embeddings (concat's input).")
    ] = True,
    dropout: float = 0.2,
    modalities: Annotated[str, typer.Option(help="both | text | image (ablations).")] = "both",
    name: Annotated[str, typer.Option(help="model_version prefix.")] = "fusion",
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 8,
    class_weighting: Annotated[str, typer.Option(help="none | sqrt | balanced")] = "sqrt",
    seed: Seed = 0,
    val_fraction: ValFraction = 0.1,
    test_fraction: TestFraction = 0.1,
    target_precision: TargetPrecision = 0.9,
    unfreeze: Annotated[bool, typer.Option(help="Stage 2: fine-tune encoders (GPU).")] = False,
    encoder_learning_rate: float = 1e-5,
    stage2_epochs: int = 3,
    device: TrainDevice = "auto",
    amp: Annotated[
        bool,
        typer.Option(help="Stage 2 on CUDA: bf16 autocast (fp16 + loss scaling without bf16)."),
    ] = True,
    rgcl_weight: RgclWeight = 0.0,
    rgcl_negatives: RgclNegatives = 8,
    rgcl_temperature: RgclTemperature = 0.1,
    knn_vote_weight: KnnVoteWeight = 0.0,
    knn_k: KnnK = 10,
    knn_temperature: KnnTemperature = 0.1,
    itc_weight: ItcWeight = 0.0,
    stage2_itc_weight: Stage2ItcWeight = 0.0,
    distill_alpha: DistillAlpha = 0.0,
    momentum: Momentum = 0.995,
    itm: Annotated[
        bool,
        typer.Option(
            help="Also train an image-text matching head; its score image_text_mismatch is "
            "served for policies (stage 1)."
        ),
    ] = False,
    object_tags: ObjectTags = 0,
    architecture: Annotated[
        str,
        typer.Option(
            help="fusion (dual encoders + a head) | visualbert (single-stream over caption "
            "tokens and grid features; trains end to end with the --stage2-* options) | "
            "lxmert (two-stream co-attention over the same inputs, trained the same way)."
        ),
    ] = "fusion",
    visualbert_init: Annotated[
        str, typer.Option(help="visualbert: minilm (offline) or a local VisualBERT directory.")
    ] = "minilm",
    lxmert_init: Annotated[
        str, typer.Option(help="lxmert: minilm (offline) or a local LXMERT directory.")
    ] = "minilm",
    cross_layers: Annotated[
        int, typer.Option(help="lxmert (minilm init): co-attention layers (x_layers).")
    ] = 2,
    visual_layers: Annotated[
        int, typer.Option(help="lxmert (minilm init): visual-stream layers (r_layers).")
    ] = 1,
    new_layers_learning_rate: Annotated[
        float, typer.Option(help="lxmert: learning rate of the new cross and visual layers.")
    ] = 3e-4,
    lxmert_pooling: Annotated[
        str,
        typer.Option(
            help="lxmert: what the classifier reads: product (both streams' means and their "
            "element-wise product, ViLBERT's) | mean (the means alone) | cls (LXMERT's pooled "
            "[CLS])."
        ),
    ] = "product",
    grid: Annotated[int, typer.Option(help="visualbert: visual tokens = grid x grid.")] = 7,
    visual_drop: Annotated[
        float, typer.Option(help="visualbert: Pixel-BERT share of visual tokens dropped.")
    ] = 0.0,
    max_text_tokens: Annotated[int, typer.Option(help="visualbert: caption tokens.")] = 48,
    stage2_batch_size: int = 32,
    frame_pooling: Annotated[
        str,
        typer.Option(
            help="Rows with a video or frame folder: max | mean pool the frames' scores, "
            "attention also trains a frame attention served with the head (docs/video.md)."
        ),
    ] = "max",
    limit: Limit = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
) -> None:
    """Train a fusion head (stage 1) and optionally the encoders (stage 2) into a checkpoint,
    or a single-stream VisualBERT classifier (--architecture visualbert)."""
    from pydantic import ValidationError

    from moderator.model.backbones import parse_backbone
    from moderator.model.fusion_heads import HeadConfig
    from moderator.training.device import training_device
    from moderator.training.run import run_training
    from moderator.training.trainer import TrainConfig

    try:
        spec = dataset_spec(
            preset, text_field, image_field, label_field, label_map, category, image_root
        )
        if text_source:
            spec = spec.model_validate({**spec.model_dump(), "text_source": text_source})
        head_config = HeadConfig.model_validate(
            {
                "type": head,
                "hidden_dim": hidden_dim,
                "projection_dim": projection_dim,
                "unimodal_terms": unimodal_terms,
                "with_embeddings": with_embeddings,
                "dropout": dropout,
            }
        )
        config = TrainConfig.model_validate(
            {
                "name": name,
                "head": head_config,
                "modalities": modalities,
                "epochs": epochs,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "weight_decay": weight_decay,
                "patience": patience,
                "seed": seed,
                "class_weighting": class_weighting,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "target_precision": target_precision,
                "unfreeze": unfreeze,
                "encoder_learning_rate": encoder_learning_rate,
                "stage2_epochs": stage2_epochs,
                "stage2_batch_size": stage2_batch_size,
                "device": device,
                "amp": amp,
                "rgcl_weight": rgcl_weight,
                "rgcl_negatives": rgcl_negatives,
                "rgcl_temperature": rgcl_temperature,
                "knn_vote_weight": knn_vote_weight,
                "knn_k": knn_k,
                "knn_temperature": knn_temperature,
                "itc_weight": itc_weight,
                "stage2_itc_weight": stage2_itc_weight,
                "distill_alpha": distill_alpha,
                "momentum": momentum,
                "itm": itm,
                "object_tags": object_tags,
            }
        )
        backbone_spec = parse_backbone(backbone)
        if frame_pooling not in ("max", "mean", "attention"):
            raise ValueError(f"--frame-pooling must be max, mean or attention: {frame_pooling!r}")
        if frame_pooling != "max" and architecture != "fusion":
            raise ValueError(f"--frame-pooling {frame_pooling} trains the fusion architecture")
        if architecture == "lxmert" and visualbert_init != "minilm":
            raise ValueError("--visualbert-init is an option of --architecture visualbert")
        single = _single_stream(
            architecture, visualbert_init, grid, visual_drop, max_text_tokens, config, backbone
        )
        arch: SingleStreamSpec | TwoStreamSpec | None = single
        if architecture == "lxmert" and single is not None:
            arch = _two_stream(lxmert_init, cross_layers, visual_layers, lxmert_pooling, single)
        elif (lxmert_init, cross_layers, visual_layers, lxmert_pooling) != (
            "minilm", 2, 1, "product",
        ) or new_layers_learning_rate != 3e-4:  # fmt: skip
            raise ValueError(
                "--lxmert-init, --cross-layers, --visual-layers, --new-layers-learning-rate and "
                "--lxmert-pooling are options of --architecture lxmert"
            )
    except (ValidationError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e
    try:
        # Before any data is read: a device torch cannot see fails at once.
        console.print(f"training on {training_device(config.device)}")
        with progress_bar() as progress:
            if arch is not None:
                from moderator.training.single_stream import run_single_stream

                report = run_single_stream(
                    data, spec, arch, config, out, report_dir, val_data,
                    resolve_cache(cache_dir, no_cache), limit, progress, image_size,
                    new_layers_learning_rate,
                )  # fmt: skip
            else:
                report = run_training(
                    data, spec, backbone_spec, config, out, report_dir, val_data,
                    resolve_cache(cache_dir, no_cache), limit, progress, image_size,
                    frame_pooling,  # type: ignore[arg-type]  # checked above
                )  # fmt: skip
    except ModeratorError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    _print_metrics("validation", report["validation"])
    if "test" in report:
        _print_metrics(f"held-out test ({report['test_rows']} rows)", report["test"])
    console.print(f"checkpoint {report['model_version']} written to {out}")
    console.print(f"report: {report_dir or out / 'report'}")


def _single_stream(
    architecture: str,
    init: str,
    grid: int,
    visual_drop: float,
    max_text_tokens: int,
    config: TrainConfig,
    backbone: str,
) -> SingleStreamSpec | None:
    """The VisualBERT spec for --architecture visualbert (None for fusion); options that only
    the fusion model has are refused rather than ignored."""
    from moderator.model.single_stream import SingleStreamSpec, published_shape

    if architecture == "fusion":
        return None
    if architecture not in ("visualbert", "lxmert"):
        raise ValueError(
            f"--architecture must be fusion, visualbert or lxmert, got {architecture!r}"
        )
    fusion_only = {
        "--backbone": backbone != "offline",
        "--unfreeze": config.unfreeze,
        "--rgcl-weight": config.rgcl_weight > 0,
        "--itc-weight": config.itc_weight > 0,
        "--stage2-itc-weight": config.stage2_itc_weight > 0,
        "--distill-alpha": config.distill_alpha > 0,
        "--knn-vote-weight": config.knn_vote_weight > 0,
        "--modalities": config.modalities != "both",
        "--itm": config.itm,
        "--object-tags": config.object_tags > 0,
    }
    refused = [flag for flag, given in fusion_only.items() if given]
    if refused:
        raise ValueError(f"--architecture {architecture} does not take {', '.join(refused)}")
    options: dict[str, Any] = {
        "grid": grid,
        "visual_drop": visual_drop,
        "max_text_tokens": max_text_tokens,
    }
    if init == "minilm":
        return SingleStreamSpec(init="minilm", **options)
    shape: dict[str, Any] = published_shape(Path(init))
    return SingleStreamSpec(init="path", init_path=init, **shape, **options)


def _two_stream(
    init: str, cross_layers: int, visual_layers: int, pooling: str, single: SingleStreamSpec
) -> TwoStreamSpec:
    """The LXMERT spec: the grid and caption options checked as VisualBERT's (`single`), the
    layer counts given, or published weights' shape with `init` a directory."""
    from moderator.model.two_stream import TwoStreamSpec, published_shape

    options: dict[str, Any] = single.model_dump(include={"grid", "visual_drop", "max_text_tokens"})
    options["pooling"] = pooling
    if init == "minilm":
        layers: dict[str, Any] = {"cross_layers": cross_layers, "visual_layers": visual_layers}
        return TwoStreamSpec(init="minilm", **layers, **options)
    if (cross_layers, visual_layers) != (2, 1):
        raise ValueError(
            "--cross-layers and --visual-layers come from the published weights' config.json"
        )
    shape: dict[str, Any] = published_shape(Path(init))
    return TwoStreamSpec(init="path", init_path=init, **shape, **options)


@model_app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory (any kind).")],
    data: Annotated[Path, typer.Argument(help="JSONL or CSV data.")],
    report_dir: Annotated[Path, typer.Option(help="Where report.json and roc.png go.")] = Path(
        "eval-report"
    ),
    split: Annotated[
        str, typer.Option(help="all, or train/val/test as `moderator train` split the file.")
    ] = "all",
    preset: Preset = None,
    text_field: TextField = None,
    image_field: ImageField = None,
    label_field: LabelField = None,
    label_map: LabelMap = None,
    category: Category = None,
    image_root: ImageRoot = None,
    precision: Annotated[
        str, typer.Option(help="fp32 | bf16 | int8 (CPU); fp32 | fp16 | bf16 (CUDA)")
    ] = "fp32",
    device: Annotated[
        str, typer.Option(help="cpu | cuda | cuda:N | auto: score as a replica on it would.")
    ] = "cpu",
    seed: Seed = 0,
    val_fraction: ValFraction = 0.1,
    test_fraction: TestFraction = 0.1,
    target_precision: TargetPrecision = 0.9,
    limit: Limit = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
) -> None:
    """Score a data set with a checkpoint and report per-category figures."""
    from moderator.model.inference import PRECISIONS
    from moderator.training.evaluate import run_eval

    spec = dataset_spec(
        preset, text_field, image_field, label_field, label_map, category, image_root
    )
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    try:
        with progress_bar() as progress:
            report = run_eval(
                checkpoint, data, spec, report_dir, split, precision, seed,
                val_fraction, test_fraction, target_precision, limit,
                resolve_cache(cache_dir, no_cache), progress, device,
            )  # fmt: skip
    except (ModeratorError, ValueError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    _print_metrics(f"{report['model_version']} on {data.name} ({split})", report["metrics"])
    console.print(f"report: {report_dir}")
