"""The single-stream (VisualBERT) classifier: MiniLM initialisation, Pixel-BERT sampling, the
checkpoint round trip through serving, published weights by local path, and learnability on
generated data whose label needs both modalities."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from moderator.model import load_model
from moderator.model.errors import ModelLoadError
from moderator.model.single_stream import (
    SingleStreamSpec,
    build_classifier,
    load_tokenizer,
    sample_visual_tokens,
    token_ids,
)
from moderator.model.single_stream_model import (
    SingleStreamConfig,
    SingleStreamModerationModel,
    save_single_stream,
)
from moderator.model.text_encoder import MiniLMTextEncoder, default_minilm_path
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import score_request
from tests.unit.test_training_pipeline import cli_app

TINY = SingleStreamSpec(
    init="random", hidden_size=32, layers=1, heads=2, intermediate_size=64, grid=2
)
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


def test_copied_minilm_layers_reproduce_minilm_on_text(minilm: MiniLMTextEncoder) -> None:
    classifier = build_classifier(SingleStreamSpec(), 1, minilm.model).eval()
    ids = torch.from_numpy(
        token_ids(minilm.tokenizer, ["a caption about a meme", "short", ""], 24)
    ).long()
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = minilm.model(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        actual = classifier.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    torch.testing.assert_close(actual[valid], expected[valid], atol=1e-4, rtol=1e-4)
    # The visual embeddings start as the text ones (VisualBERT's special initialisation).
    embeddings = classifier.encoder.embeddings
    torch.testing.assert_close(
        embeddings.visual_position_embeddings.weight, embeddings.position_embeddings.weight
    )


def test_pixel_bert_sampling_keeps_a_random_share_with_own_features() -> None:
    torch.manual_seed(0)
    visual = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8, 1).expand(2, 8, 3)
    mask = torch.tensor([[1] * 8, [0] * 8])
    kept, kept_mask = sample_visual_tokens(visual, mask, drop=0.5)
    assert kept.shape == (2, 4, 3) and kept_mask.shape == (2, 4)
    for row in range(2):
        values = kept[row, :, 0].tolist()
        assert len(set(values)) == 4  # no token twice
        assert set(values) <= set(visual[row, :, 0].tolist())  # each keeps its own features
    assert kept_mask[1].sum() == 0  # a row without an image stays masked
    again, _ = sample_visual_tokens(visual, mask, drop=0.5)
    assert not torch.equal(kept, again)  # a new subset per step (seeded: deterministic)


def test_visual_drop_applies_in_training_only() -> None:
    spec = TINY.model_copy(update={"visual_drop": 0.5, "dropout": 0.0})
    classifier = build_classifier(spec, 1)
    ids = torch.tensor([[101, 2000, 102, 0]])
    visual = torch.randn(1, 4, 1280)
    has = torch.tensor([True])
    classifier.eval()
    first, second = classifier(ids, visual, has), classifier(ids, visual, has)
    torch.testing.assert_close(first, second)
    classifier.train()
    torch.manual_seed(1)
    outputs = {round(float(classifier(ids, visual, has)), 6) for _ in range(8)}
    assert len(outputs) > 1  # different visual subsets in different steps


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    classifier = build_classifier(TINY, 2)
    config = SingleStreamConfig(
        name="vb-test",
        categories=["hate", "harm"],
        spec=TINY,
        preprocessing={"image_size": IMAGE_SIZE, "mean": (0.5,) * 3, "std": (0.5,) * 3},
    )
    return save_single_stream(tmp_path_factory.mktemp("vb"), config, classifier)


def test_round_trip_through_serving_gives_identical_scores(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint)
    assert isinstance(model, SingleStreamModerationModel)
    assert model.model_version.startswith("vb-test-")
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
    # The same posts scored directly on the model's features: ids and grid features.
    ids = model.embed_texts([*captions[:2], ""])
    grid = np.concatenate([model.embed_images(pixels[:2]), np.zeros((1, 4 * 1280), np.float32)])
    # float16 values (what the training cache and the Redis feature cache store): exact there.
    np.testing.assert_array_equal(grid, grid.astype(np.float16).astype(np.float32))
    expected = model.score_features(ids, grid, np.array([True, True, False]))
    np.testing.assert_allclose(response.scores, expected, atol=1e-6)
    # The loaded model scores what the saved classifier scores (no weight lost on the way).
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
    config = (broken / "config.json").read_text().replace('"layers": 1', '"layers": 2')
    (broken / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match="do not fit the spec"):
        load_model(broken)


def test_published_weights_load_by_local_path(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, VisualBertConfig, VisualBertModel

    published = VisualBertModel(
        VisualBertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            visual_embedding_dim=2048,  # detector features, as published checkpoints expect
        )
    )
    published.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(default_minilm_path(), local_files_only=True).save_pretrained(
        tmp_path
    )
    from moderator.model.single_stream import published_shape

    spec = SingleStreamSpec(init="path", init_path=str(tmp_path), **published_shape(tmp_path))
    classifier = build_classifier(spec, 1)
    source = published.state_dict()
    for key, value in classifier.encoder.state_dict().items():
        if key == "embeddings.visual_projection.weight":
            assert value.shape == (32, 1280)  # re-initialised for the grid's features
        elif key.startswith("embeddings.visual_projection"):
            continue
        elif key in source:
            torch.testing.assert_close(value, source[key])
    assert load_tokenizer(spec).vocab_size == published.config.vocab_size
    with pytest.raises(ModelLoadError, match="cannot read a VisualBERT config"):
        published_shape(tmp_path / "missing")


def test_cli_refuses_fusion_only_options() -> None:
    result = CliRunner().invoke(
        cli_app(),
        ["train", "data.jsonl", "--out", "x", "--architecture", "visualbert", "--unfreeze"],
    )
    assert result.exit_code == 2
    assert "does not take --unfreeze" in result.output
