"""The two-stream (LXMERT) classifier: MiniLM initialisation of the language stream, cell boxes,
rows without an image, the checkpoint round trip through serving, published weights by local
path, and the CLI's checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from moderator.model import load_model
from moderator.model.errors import ModelLoadError
from moderator.model.single_stream import load_tokenizer, token_ids
from moderator.model.single_stream_model import SingleStreamModerationModel
from moderator.model.text_encoder import MiniLMTextEncoder, default_minilm_path
from moderator.model.two_stream import (
    TwoStreamSpec,
    build_classifier,
    cell_boxes,
    published_shape,
)
from moderator.model.two_stream_model import TwoStreamConfig, save_two_stream
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import score_request
from tests.unit.test_training_pipeline import cli_app

TINY = TwoStreamSpec(
    init="random",
    hidden_size=32,
    heads=2,
    intermediate_size=64,
    language_layers=1,
    cross_layers=1,
    visual_layers=1,
    grid=2,
)
IMAGE_SIZE = 64


def test_copied_language_stream_reproduces_minilm_up_to_the_cross_layers() -> None:
    minilm = MiniLMTextEncoder()
    classifier = build_classifier(TwoStreamSpec(grid=2), 1, minilm.model).eval()
    ids = torch.from_numpy(
        token_ids(minilm.tokenizer, ["a caption about a meme", "short", ""], 24)
    ).long()
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = minilm.model(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        out = classifier.encoder(
            input_ids=ids,
            attention_mask=mask,
            visual_feats=torch.randn(3, 4, 1280),
            visual_pos=classifier.boxes.expand(3, -1, -1),
            output_hidden_states=True,
        )
    # language_hidden_states: the six language layers' outputs, then the cross layers'.
    before_cross = out.language_hidden_states[classifier.spec.language_layers - 1]
    valid = mask.bool()
    torch.testing.assert_close(before_cross[valid], expected[valid], atol=1e-4, rtol=1e-4)
    # The cross layers are new: after them the language stream has read the image.
    assert not torch.allclose(out.language_output[valid], expected[valid], atol=1e-2)


def test_cell_boxes_are_normalised_row_major_cells() -> None:
    boxes = cell_boxes(2)
    expected = [[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]]
    torch.testing.assert_close(boxes, torch.tensor(expected))
    assert cell_boxes(4).shape == (16, 4) and float(cell_boxes(4).max()) == 1.0


@pytest.mark.parametrize("pooling", ["mean", "product", "cls"])
def test_a_row_without_an_image_ignores_its_visual_features(pooling: str) -> None:
    torch.manual_seed(0)
    classifier = build_classifier(TINY.model_copy(update={"pooling": pooling}), 2).eval()
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2000, 2001, 102]])
    has = torch.tensor([False, True])
    first = classifier(ids, torch.randn(2, 4, 1280), has)
    second = classifier(ids, torch.randn(2, 4, 1280), has)
    torch.testing.assert_close(first[0], second[0])  # no image: the features are not read
    assert not torch.allclose(first[1], second[1])  # with one they are


def test_visual_drop_keeps_boxes_with_their_cells_in_training_only() -> None:
    spec = TINY.model_copy(update={"visual_drop": 0.5, "dropout": 0.0})
    classifier = build_classifier(spec, 1)
    ids = torch.tensor([[101, 2000, 102, 0]])
    visual, has = torch.randn(1, 4, 1280), torch.tensor([True])
    classifier.eval()
    torch.testing.assert_close(classifier(ids, visual, has), classifier(ids, visual, has))
    classifier.train()
    torch.manual_seed(1)
    assert len({round(float(classifier(ids, visual, has)), 6) for _ in range(8)}) > 1


def test_product_pooling_reads_both_means_and_their_product() -> None:
    """ViLBERT's joint representation: the classifier sees [language, vision, language * vision]
    (so it can read how the streams agree), and the product part is 0 without an image."""
    torch.manual_seed(0)
    spec = TINY.model_copy(update={"pooling": "product"})
    classifier = build_classifier(spec, 1).eval()
    assert classifier.classifier.in_features == 3 * spec.hidden_size
    seen: list[torch.Tensor] = []
    classifier.classifier.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    ids = torch.tensor([[101, 2000, 102], [101, 2001, 102]])
    classifier(ids, torch.randn(2, 4, 1280), torch.tensor([True, False]))
    language, vision, product = seen[0].split(spec.hidden_size, dim=1)
    torch.testing.assert_close(product, language * vision)
    assert float(vision[1].abs().max()) == 0.0 and float(product[0].abs().max()) > 0.0


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = TwoStreamConfig(
        name="lx-test",
        categories=["hate", "harm"],
        spec=TINY,
        preprocessing={"image_size": IMAGE_SIZE, "mean": (0.5,) * 3, "std": (0.5,) * 3},
    )
    return save_two_stream(tmp_path_factory.mktemp("lx"), config, build_classifier(TINY, 2))


def test_round_trip_through_serving_gives_identical_scores(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint)
    assert isinstance(model, SingleStreamModerationModel)
    assert model.model_version.startswith("lx-test-")
    assert model.image_embedding_dim == 4 * 1280 and model.text_embedding_dim == 48
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = ["first caption", "second one", "third"]
    request = ScoreRequest(
        [0, 1, NO_IMAGE],
        pixels[:2],
        np.zeros((0, model.image_embedding_dim), np.float32),
        [0, 1, -1],
        captions[:2],
        np.zeros((0, model.text_embedding_dim), np.float32),
    )
    response = score_request(model, request)
    ids = model.embed_texts([*captions[:2], ""])
    grid = np.concatenate([model.embed_images(pixels[:2]), np.zeros((1, 4 * 1280), np.float32)])
    expected = model.score_features(ids, grid, np.array([True, True, False]))
    np.testing.assert_allclose(response.scores, expected, atol=1e-6)
    again = load_model(tiny_checkpoint)
    assert again.model_version == model.model_version
    np.testing.assert_allclose(score_request(again, request).scores, response.scores, atol=1e-6)
    # Cached features (what the worker sends back from Redis) score the same as fresh ones.
    cached = ScoreRequest(
        [0, 1, NO_IMAGE],
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        response.new_image_embeddings,
        [0, 1, -1],
        [],
        response.new_text_embeddings,
    )
    np.testing.assert_allclose(score_request(model, cached).scores, response.scores, atol=1e-6)


def test_loader_refuses_weights_that_do_not_fit(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    config = (broken / "config.json").read_text()
    (broken / "config.json").write_text(config.replace('"cross_layers": 1', '"cross_layers": 2'))
    with pytest.raises(ModelLoadError, match="do not fit the spec"):
        load_model(broken)


def test_loader_names_the_bad_field(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["thresholds"] = {"hate": 1.5}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"config\.json.*\[0, 1\]"):
        load_model(broken)
    config["thresholds"] = {}
    config["spec"]["visual_layers"] = -1
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="visual_layers"):
        load_model(broken)


def test_published_weights_load_by_local_path(tmp_path: Path) -> None:
    """A tiny random directory in the published (unc-nlp/lxmert-base-uncased) layout: 2048-d
    detector features, its own layer counts and a tokenizer."""
    from transformers import AutoTokenizer, LxmertConfig, LxmertModel

    published = LxmertModel(
        LxmertConfig(
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
            l_layers=2,
            x_layers=1,
            r_layers=1,
            visual_feat_dim=2048,
        )
    )
    published.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(default_minilm_path(), local_files_only=True).save_pretrained(
        tmp_path
    )
    shape = published_shape(tmp_path)
    assert (shape["language_layers"], shape["cross_layers"], shape["visual_layers"]) == (2, 1, 1)
    spec = TwoStreamSpec(init="path", init_path=str(tmp_path), grid=2, **shape)
    classifier = build_classifier(spec, 1)
    source = published.state_dict()
    for key, value in classifier.encoder.state_dict().items():
        if key == "encoder.visn_fc.visn_fc.weight":
            assert value.shape == (32, 1280)  # re-initialised for the grid's features
        elif not key.startswith("encoder.visn_fc.visn_fc."):
            torch.testing.assert_close(value, source[key])
    assert load_tokenizer(spec).vocab_size == published.config.vocab_size
    with pytest.raises(ModelLoadError, match="cannot read an LXMERT config"):
        published_shape(tmp_path / "missing")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--architecture", "lxmert", "--unfreeze"], "lxmert does not take --unfreeze"),
        (
            ["--architecture", "visualbert", "--cross-layers", "3"],
            "options of --architecture lxmert",
        ),
        (
            ["--architecture", "lxmert", "--visualbert-init", "x"],
            "option of --architecture visualbert",
        ),
        (["--architecture", "lxmert", "--lxmert-init", "x", "--visual-layers", "2"], "published"),
        (["--architecture", "vilbert"], "fusion, visualbert or lxmert"),
        (["--lxmert-pooling", "mean"], "options of --architecture lxmert"),
        (["--architecture", "lxmert", "--lxmert-pooling", "max"], "'mean', 'product' or 'cls'"),
    ],
)
def test_cli_refuses_options_of_other_architectures(options: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_app(), ["train", "data.jsonl", "--out", "x", *options])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())  # the error box unwrapped
