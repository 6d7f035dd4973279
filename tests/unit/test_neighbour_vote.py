"""The kNN vote over labelled examples (moderator/model/neighbour_vote.py, RGCL's inference) and
`moderator neighbours add` (moderator/training/neighbours.py).

The vote is checked against a hand computation; a checkpoint with examples serves exactly
(1 - w)·head + w·vote and carries them in its version; a training run with the vote chooses its
thresholds on the scores the loaded checkpoint serves (identical test AUROC); adding examples
appends new posts, relabels a post already stored, and leaves the source checkpoint alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from moderator.model import load_model
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_heads import FusionHead
from moderator.model.fusion_model import FusionModerationModel, load_head, save_fusion_checkpoint
from moderator.model.neighbour_vote import NEIGHBOURS_FILE, NeighbourVote, NeighbourVoteConfig
from moderator.training.embedding_cache import Embeddings, cached_embeddings
from moderator.training.errors import TrainingDataError
from moderator.training.frame_training import refuse_unsupported
from moderator.training.metrics import auroc
from moderator.training.neighbours import build_neighbours, merge_examples
from moderator.training.neighbours_cli import neighbours_app
from moderator.training.report import choose_thresholds
from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
from moderator.training.trainer import TrainConfig
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from tests.unit.test_model_fusion_checkpoint import write_checkpoint
from tests.unit.test_training_pipeline import SPEC, cli_app, train

ROWS = 200  # the test checks that scores agree, not how well the head learns


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), ROWS, seed=0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


def vote_of(k: int, temperature: float) -> NeighbourVote:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    config = NeighbourVoteConfig(k=k, temperature=temperature, weight=0.25, examples=4)
    return NeighbourVote(config, features, labels)


def test_the_nearest_examples_vote_with_softmax_weights_of_their_cosine() -> None:
    vote = vote_of(k=2, temperature=0.5)
    # Query along x: cosines 1 (row 0), 0.707 (row 2), 0 (row 1), -1 (row 3); k = 2 keeps 0, 2.
    w0, w2 = math.exp(1 / 0.5), math.exp(math.sqrt(0.5) / 0.5)
    expected = [(w0 + w2) / (w0 + w2), w2 / (w0 + w2)]
    got = vote.vote(torch.tensor([[3.0, 0.0]]))[0].tolist()
    assert got == pytest.approx(expected, abs=1e-6)
    blended = vote.blend(torch.tensor([[0.0, 1.0]]), torch.tensor([[3.0, 0.0]]))[0].tolist()
    assert blended == pytest.approx([0.25 * expected[0], 0.75 + 0.25 * expected[1]], abs=1e-6)


def test_k_beyond_the_stored_examples_lets_all_of_them_vote() -> None:
    got = vote_of(k=50, temperature=1e3).vote(torch.tensor([[1.0, 0.0]]))[0].tolist()
    assert got == pytest.approx([0.5, 0.5], abs=1e-3)  # all four, almost equal weights


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (torch.ones(3, 2), torch.ones(3, 2), "3 examples stored, but the config says 4"),
        (torch.ones(4, 2), torch.ones(3, 2), "must be [examples, F]"),
        (torch.ones(4, 2), torch.full((4, 2), 0.5), "labels must be 0 or 1"),
    ],
)
def test_inconsistent_examples_are_refused(
    features: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NeighbourVote(NeighbourVoteConfig(examples=4), features, labels)


def test_a_new_post_appends_and_the_same_post_relabels() -> None:
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    old_labels = torch.tensor([[1.0], [0.0]])
    new = torch.tensor([[0.0, 1.0], [0.6, 0.8], [0.6, 0.8], [0.0, 1.0]])
    new_labels = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    features, labels, replaced = merge_examples(old, old_labels, new, new_labels)
    # Rows 0 and 3 are stored row 1 (the last says 0); rows 1 and 2 one new post (the last: 1).
    assert replaced == 3
    expected = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    np.testing.assert_allclose(features.numpy(), np.array(expected), atol=1e-6)
    assert labels[:, 0].tolist() == [1.0, 0.0, 1.0]


def random_embeddings(model: FusionModerationModel, rows: int, seed: int) -> Embeddings:
    rng = np.random.default_rng(seed)
    return Embeddings(
        rng.normal(size=(rows, model.text_embedding_dim)).astype(np.float32),
        rng.normal(size=(rows, model.image_embedding_dim)).astype(np.float32),
        rng.random(rows) > 0.2,
    )


def plain_checkpoint(directory: Path, clip_dir: Path) -> tuple[FusionModerationModel, FusionHead]:
    """A tiny-CLIP fusion checkpoint without examples, loaded, and its head."""
    plain = load_model(write_checkpoint(directory, clip_dir))
    assert isinstance(plain, FusionModerationModel)
    return plain, load_head(directory, plain.config)


def test_a_checkpoint_with_examples_serves_the_blend(
    tiny_clip_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    plain, head = plain_checkpoint(tmp_path / "plain", tiny_clip_dir)
    examples = random_embeddings(plain, 40, seed=1)
    categories = len(plain.categories)
    labels = (np.random.default_rng(2).random((40, categories)) > 0.5).astype(np.float32)
    vote = build_neighbours(head, examples, labels, "both", k=5, temperature=0.1, weight=0.4)
    save_fusion_checkpoint(tmp_path / "knn", plain.config, head, neighbours=vote)
    model = load_model(tmp_path / "knn")
    assert isinstance(model, FusionModerationModel) and model.neighbours is not None
    assert model.model_version != plain.model_version  # the examples are in the version
    assert load_model(tmp_path / "plain").model_version == plain.model_version
    posts = random_embeddings(plain, 16, seed=3)
    served = model.score_embeddings(posts.text, posts.image, posts.has_image)
    head_only = plain.score_embeddings(posts.text, posts.image, posts.has_image)
    fused = torch.from_numpy(model.fused_features(posts.text, posts.image, posts.has_image))
    expected = 0.6 * head_only + 0.4 * vote.vote(fused).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert not np.allclose(served, head_only, atol=1e-3)


def test_examples_that_do_not_fit_the_head_are_a_load_error(
    tiny_clip_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    plain, head = plain_checkpoint(tmp_path / "plain", tiny_clip_dir)
    wrong = NeighbourVote(NeighbourVoteConfig(examples=3), torch.ones(3, 7), torch.ones(3, 1))
    save_fusion_checkpoint(tmp_path / "bad", plain.config, head, neighbours=wrong)
    with pytest.raises(ModelLoadError, match=f"invalid .*{NEIGHBOURS_FILE}: examples are 7-d"):
        load_model(tmp_path / "bad")


def neighbours_cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(neighbours_app, name="neighbours")
    return app


def test_trained_with_the_vote_then_examples_added_without_retraining(
    synthetic: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Thresholds and the report come from the served scores; `neighbours add` appends new
    posts to a copy, relabels stored ones, and refuses to overwrite a directory."""
    out = tmp_path / "knn"
    report = train(synthetic, out, cache_dir, knn_vote_weight=0.5, knn_k=5, epochs=10)
    config = json.loads((out / "config.json").read_text())
    assert config["neighbours"]["examples"] == report_rows(out, "train")
    assert config["training"]["knn_vote"] == {"weight": 0.5, "k": 5, "temperature": 0.1}
    model = load_model(out)
    assert isinstance(model, FusionModerationModel)
    # The loaded checkpoint's test AUROC is the one training reported: same scores.
    from moderator.training.splits import load_splits

    splits = load_splits(synthetic, SPEC, None, TrainConfig(val_fraction=0.2, test_fraction=0.25))
    assert splits.test is not None
    embeddings = cached_embeddings(model.backbone, splits.dataset, cache_dir)
    test = embeddings.subset(splits.parts["test"])
    scores = model.score_embeddings(test.text, test.image, test.has_image)
    labels = splits.test.labels()[:, 0]
    assert auroc(labels, scores[:, 0]) == pytest.approx(report["test"][CATEGORY]["auroc"], 1e-9)

    more = write_synthetic_dataset(tmp_path / "more", 40, seed=7)
    runner = CliRunner()
    grown = tmp_path / "grown"
    result = runner.invoke(
        neighbours_cli(),
        ["neighbours", "add", str(out), str(more), "--out", str(grown), "--val-data",
         str(synthetic), "--cache-dir", str(cache_dir), "--category", CATEGORY, "--k", "7"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grown_config = json.loads((grown / "config.json").read_text())
    stored = grown_config["neighbours"]["examples"]
    assert stored > config["neighbours"]["examples"]
    assert grown_config["neighbours"]["k"] == 7 and grown_config["neighbours"]["weight"] == 0.5
    grown_model = load_model(grown)
    assert isinstance(grown_model, FusionModerationModel)
    assert grown_model.model_version != model.model_version
    # --val-data chose the threshold again, on the scores the new checkpoint serves.
    served = grown_model.score_embeddings(embeddings.text, embeddings.image, embeddings.has_image)
    chosen, _ = choose_thresholds(splits.dataset.labels(), served, [CATEGORY], 0.9)
    assert grown_config["thresholds"] == chosen
    assert json.loads((out / "config.json").read_text()) == config  # the source is untouched

    # The same posts again, every label flipped: nothing appended, stored labels replaced.
    flipped = tmp_path / "flipped.jsonl"
    rows = [json.loads(line) for line in more.read_text().splitlines()]
    images = more.parent
    flipped.write_text(
        "".join(
            json.dumps({**row, "img": str(images / row["img"]), "label": 1 - row["label"]}) + "\n"
            for row in rows
        )
    )
    again = tmp_path / "again"
    result = runner.invoke(
        neighbours_cli(),
        ["neighbours", "add", str(grown), str(flipped), "--out", str(again),
         "--cache-dir", str(cache_dir), "--category", CATEGORY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((again / "config.json").read_text())["neighbours"]["examples"] == stored
    assert "0 new, 40 replaced" in result.output
    before = load_model(grown)
    after = load_model(again)
    assert isinstance(before, FusionModerationModel) and isinstance(after, FusionModerationModel)
    assert before.neighbours is not None and after.neighbours is not None
    assert not torch.equal(before.neighbours.labels, after.neighbours.labels)

    result = runner.invoke(
        neighbours_cli(),
        ["neighbours", "add", str(out), str(more), "--out", str(grown),
         "--cache-dir", str(cache_dir), "--category", CATEGORY],
    )  # fmt: skip
    assert result.exit_code == 2 and "exists and is not empty" in result.output


def report_rows(checkpoint: Path, split: str) -> int:
    rows: int = json.loads((checkpoint / "config.json").read_text())["training"]["rows"][split]
    return rows


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--knn-vote-weight", "1.5"], "knn_vote_weight"),
        (["--knn-vote-weight", "0.5", "--knn-k", "0"], "knn_k"),
        (["--knn-vote-weight", "0.5", "--architecture", "visualbert"], "--knn-vote-weight"),
    ],
)
def test_train_refuses_what_the_vote_cannot_use(
    tmp_path: Path, options: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        cli_app(), ["train", str(tmp_path / "none.jsonl"), "--out", str(tmp_path), *options]
    )
    assert result.exit_code == 2
    assert message in result.output
    with pytest.raises(TrainingDataError, match="--knn-vote-weight"):
        refuse_unsupported(TrainConfig(knn_vote_weight=0.5), "max")  # video or frame rows
