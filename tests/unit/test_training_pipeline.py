"""Training end to end on generated data whose label needs both image and caption.

Learnability: the cross and concat heads reach AUROC ≥ 0.95 on held-out rows while caption-only
and image-only heads stay ≤ 0.65. Also: seeded reproducibility, train → save → load → identical
scores (through serving's score_request too), the CLI, and stage 2 on a tiny CLIP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from moderator.model import load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.base import score_captions
from moderator.model.fusion_heads import HeadConfig
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import score_request
from moderator.training.cli import model_app
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.training.embedding_cache import load_pixels
from moderator.training.run import run_training
from moderator.training.splits import load_splits
from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
from moderator.training.trainer import TrainConfig
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401

ROWS = 800
IMAGE_SIZE = 64  # the PNGs are 64 px: a larger input adds compute, not information
SPEC = DatasetSpec(categories=[CATEGORY])
OFFLINE = BackboneSpec(type="offline", id="default")


def cli_app() -> typer.Typer:
    """The commands mounted at the top level, as moderator/cli.py does."""
    app = typer.Typer()
    app.registered_commands += model_app.registered_commands
    return app


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), ROWS, seed=0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


def train(
    data: Path, out: Path, cache: Path, backbone: BackboneSpec = OFFLINE, **options: Any
) -> dict[str, Any]:
    head = options.pop("head", HeadConfig())
    config = TrainConfig(head=head, val_fraction=0.2, test_fraction=0.25, **options)
    size = IMAGE_SIZE if backbone.type == "offline" else None
    return run_training(data, SPEC, backbone, config, out, cache_dir=cache, image_size=size)


@pytest.fixture(scope="module")
def cross_run(synthetic: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cross")
    train(synthetic, out, cache_dir)
    return out


def test_cross_head_learns_what_needs_both_modalities(cross_run: Path) -> None:
    report = json.loads((cross_run / "report" / "report.json").read_text())
    assert report["test"][CATEGORY]["auroc"] >= 0.95
    assert {p.name for p in (cross_run / "report").iterdir()} >= {
        "report.json",
        "roc.png",
        "training.png",
    }


@pytest.mark.parametrize(
    ("options", "low", "high"),
    [
        ({"head": HeadConfig(type="concat")}, 0.95, 1.0),
        ({"head": HeadConfig(with_embeddings=False)}, 0.95, 1.0),
        ({"modalities": "text"}, 0.0, 0.65),
        ({"modalities": "image"}, 0.0, 0.65),
    ],
    ids=["concat", "pure-cross", "caption-only", "image-only"],
)
def test_heads_and_ablations(
    synthetic: Path,
    cache_dir: Path,
    tmp_path: Path,
    options: dict[str, Any],
    low: float,
    high: float,
) -> None:
    report = train(synthetic, tmp_path, cache_dir, **options)
    assert low <= report["test"][CATEGORY]["auroc"] <= high


def test_training_is_reproducible(
    synthetic: Path, cache_dir: Path, cross_run: Path, tmp_path: Path
) -> None:
    train(synthetic, tmp_path, cache_dir)
    first = load_file(str(cross_run / "head.safetensors"))
    second = load_file(str(tmp_path / "head.safetensors"))
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)
    assert (cross_run / "config.json").read_text() == (tmp_path / "config.json").read_text()


def test_round_trip_scores_are_identical(synthetic: Path, cross_run: Path, cache_dir: Path) -> None:
    """Scores of the loaded checkpoint (serving path) equal the ones the training run reported."""
    from moderator.training.embedding_cache import cached_embeddings
    from moderator.training.trainer import predict

    model = load_model(cross_run)
    splits = load_splits(synthetic, SPEC, None, TrainConfig(val_fraction=0.2, test_fraction=0.25))
    test = splits.test
    assert test is not None
    examples = test.examples[:24]
    pixels = np.stack([load_pixels(e.image, IMAGE_SIZE) for e in examples])  # type: ignore[arg-type]
    captions = [e.text for e in examples]
    index = list(range(len(examples)))
    index[3] = NO_IMAGE
    # Raw captions, as training embedded them (the worker would send them normalised).
    request = ScoreRequest(
        index,
        pixels,
        np.zeros((0, 1280), np.float32),
        list(range(len(captions))),
        captions,
        np.zeros((0, model.text_embedding_dim), np.float32),
    )
    response = score_request(model, request)
    whole = cached_embeddings(model.backbone, splits.dataset, cache_dir)  # type: ignore[attr-defined]
    rows = splits.parts["test"][:24]
    embeddings = whole.subset(rows)
    embeddings.has_image[3] = False
    from moderator.model.fusion_model import load_head

    head = load_head(cross_run, model.config)  # type: ignore[attr-defined]
    expected = predict(head, embeddings, "both")
    # The served path encodes these 24 images in one batch, the cache in batches of 32 among
    # others: the image embeddings agree to 1e-4 (below), the scores as closely.
    np.testing.assert_allclose(response.scores, expected, atol=1e-4)
    np.testing.assert_allclose(response.new_image_embeddings, embeddings.image, atol=1e-4)
    np.testing.assert_allclose(response.new_text_embeddings, embeddings.text, atol=1e-4)


def test_cli_train_and_eval(synthetic: Path, cache_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ckpt"
    common = ["--category", CATEGORY, "--cache-dir", str(cache_dir)]
    result = runner.invoke(
        cli_app(),
        ["train", str(synthetic), "--out", str(out), "--head", "late", "--image-size", "64",
         "--val-fraction", "0.2", "--test-fraction", "0.25", "--epochs", "3", *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held-out test" in result.output and (out / "report" / "roc.png").is_file()
    result = runner.invoke(
        cli_app(),
        ["eval", str(out), str(synthetic), "--split", "test", "--val-fraction", "0.2",
         "--test-fraction", "0.25", "--report-dir", str(tmp_path / "eval"), *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    trained = json.loads((out / "report" / "report.json").read_text())
    assert report["rows"] == trained["test_rows"] == 200
    assert report["metrics"][CATEGORY]["auroc"] == pytest.approx(
        trained["test"][CATEGORY]["auroc"], abs=1e-6
    )
    for key in ("auroc", "average_precision", "f1", "accuracy", "ece", "suggested"):
        assert key in report["metrics"][CATEGORY]


def test_stage2_fine_tunes_a_tiny_clip(
    tmp_path: Path,
    tiny_clip_dir: Path,  # noqa: F811
) -> None:
    data = write_synthetic_dataset(tmp_path / "data", rows=40, seed=1)
    backbone = BackboneSpec(type="clip", id=str(tiny_clip_dir))
    out = tmp_path / "ckpt"
    report = train(
        data, out, tmp_path / "cache", backbone, unfreeze=True, stage2_epochs=1, epochs=3
    )
    assert len(report["history"]["stage2_val_auroc"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["backbone_weights"] == "backbone.safetensors"
    tuned = load_file(str(out / "backbone.safetensors"))
    base = load_file(str(tiny_clip_dir / "model.safetensors"))
    changed = [k for k in base if not np.array_equal(base[k].numpy(), tuned[f"model.{k}"].numpy())]
    assert changed, "stage 2 left every encoder weight unchanged"
    model = load_model(out)
    pixels = np.stack([load_pixels(e.image, 32) for e in read_dataset(data, SPEC).examples[:2]])  # type: ignore[arg-type]
    scores = score_captions(model, ["a", "b"], model.embed_images(pixels), np.ones(2, bool))
    assert np.isfinite(scores).all()


def test_rgcl_options_are_recorded_in_the_checkpoint(
    synthetic: Path, cache_dir: Path, cross_run: Path, tmp_path: Path
) -> None:
    train(synthetic, tmp_path, cache_dir, rgcl_weight=0.5, epochs=2)
    training = json.loads((tmp_path / "config.json").read_text())["training"]
    assert training["rgcl"]["weight"] == 0.5
    assert set(training["rgcl"]) == {"weight", "negatives", "temperature"}
    # Off, nothing is added: runs without RGCL write the files they always did.
    assert "rgcl" not in json.loads((cross_run / "config.json").read_text())["training"]
