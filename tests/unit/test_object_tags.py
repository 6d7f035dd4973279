"""Object tags (OSCAR): the image's top-k ImageNet class names joined to its text, in training,
in the served path (moderator.serving.scoring) and in the worker's cache keys."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from moderator.cache import FeatureCache
from moderator.errors import ConfigError
from moderator.model import load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.base import score_captions
from moderator.model.fusion_model import FusionModerationModel
from moderator.model.object_tags import (
    ImageTagger,
    NoImageClassifierError,
    imagenet_names,
    object_tagger,
    with_tags,
)
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import model_info, score_request
from moderator.signals.embeddings import embedding_signals, text_digest
from moderator.training.dataset import read_dataset
from moderator.training.embedding_cache import cached_embeddings, load_pixels
from moderator.training.trainer import TrainConfig
from tests.unit.test_batch_builder import DictCache, _decoded
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from tests.unit.test_training_pipeline import (
    CATEGORY,
    IMAGE_SIZE,
    SPEC,
    cache_dir,  # noqa: F401
    cli_app,
    synthetic,  # noqa: F401
    train,
)
from workers.features import build_request

TAGS = 3


def _tagger(k: int = 2) -> ImageTagger:
    """A tagger over 3-d embeddings whose class c scores embedding[c % 3] * (c + 1): the
    dimension with the largest value picks the classes, highest index first."""
    weight = torch.zeros(1000, 3)
    for c in range(1000):
        weight[c, c % 3] = float(c + 1)
    return ImageTagger(weight, torch.zeros(1000), k)


def test_tagger_names_the_top_classes_in_rank_order() -> None:
    names = imagenet_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"
    tags = _tagger().tags(np.array([[1.0, 0, 0], [0, 0, 1.0]], dtype=np.float32))
    assert tags == [f"{names[999]}, {names[996]}", f"{names[998]}, {names[995]}"]


def test_only_rows_with_text_and_image_are_tagged() -> None:
    image = np.eye(3, dtype=np.float32)
    texts = _tagger().tag_texts(["a", "", "c"], image, np.array([True, True, False]))
    assert texts == [with_tags("a", _tagger().tags(image[:1])[0]), "", "c"]
    assert texts[0].startswith("a\ntags: ")


def test_a_backbone_without_an_imagenet_classifier_is_refused() -> None:
    clip = SimpleNamespace(spec=BackboneSpec(type="clip", id="x"))
    with pytest.raises(NoImageClassifierError, match="clip backbone has none"):
        ImageTagger.of(clip, 3)
    with pytest.raises(ValueError, match=r"k must be 1\.\.20"):
        ImageTagger.of(SimpleNamespace(imagenet_classifier=torch.nn.Linear(3, 1000)), 0)


def test_training_options_that_cannot_take_tags_are_refused(
    synthetic: Path,  # noqa: F811
    cache_dir: Path,  # noqa: F811
    tiny_clip_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="object_tags needs modalities=both and frozen"):
        TrainConfig(object_tags=3, unfreeze=True)
    with pytest.raises(ValidationError, match="object_tags needs modalities=both"):
        TrainConfig(object_tags=3, modalities="text")
    clip = BackboneSpec(type="clip", id=str(tiny_clip_dir))
    with pytest.raises(ConfigError, match="--object-tags: object tags need an image encoder"):
        train(synthetic, tmp_path / "clip", cache_dir, clip, object_tags=3)
    result = CliRunner().invoke(
        cli_app(),
        ["train", str(synthetic), "--out", str(tmp_path / "vb"), "--category", CATEGORY,
         "--architecture", "visualbert", "--object-tags", "3"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "does not take --object-tags" in result.output


@pytest.fixture(scope="module")
def tagged_run(
    synthetic: Path,  # noqa: F811
    cache_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    out = tmp_path_factory.mktemp("tagged")
    train(synthetic, out, cache_dir, object_tags=TAGS)
    return out


def test_a_tagged_checkpoint_records_its_tags_and_still_learns(tagged_run: Path) -> None:
    config = json.loads((tagged_run / "config.json").read_text())
    assert config["object_tags"] == TAGS
    assert config["training"]["object_tags"] == TAGS
    report = json.loads((tagged_run / "report" / "report.json").read_text())
    # 0.949 with 3 tags against 0.964 without (test_training_pipeline): tags dilute the
    # caption's colour word a little, and the label still needs both sides.
    assert report["test"][CATEGORY]["auroc"] >= 0.9


def test_served_text_embeddings_read_the_tags_of_their_image(
    synthetic: Path,  # noqa: F811
    cache_dir: Path,  # noqa: F811
    tagged_run: Path,
) -> None:
    """Training embedded `caption + its image's tags`; the served path, given the caption and
    the image (fresh or as a cached embedding), encodes exactly that, and equal captions under
    different images are different texts."""
    model = load_model(tagged_run)
    assert isinstance(model, FusionModerationModel)
    tagger = object_tagger(model)
    assert tagger is not None and tagger.k == TAGS
    assert model_info(model).object_tags
    dataset = read_dataset(synthetic, SPEC)
    examples = dataset.examples[:6]
    pixels = np.stack([load_pixels(e.image, IMAGE_SIZE) for e in examples])  # type: ignore[arg-type]
    image = model.embed_images(pixels)
    tags = tagger.tags(image)
    assert len(set(tags)) > 1  # the drawn shapes are not all one ImageNet class
    # Rows 0-3 encode their image, rows 4 and 5 send theirs as a cached embedding; row 2 has
    # no image, so its caption is read untagged.
    request = ScoreRequest(
        [0, 1, NO_IMAGE, 3, 4, 5],
        pixels[[0, 1, 2, 3]],
        image[[4, 5]],
        list(range(6)),
        [e.text for e in examples],
        np.zeros((0, model.text_embedding_dim), np.float32),
    )
    response = score_request(model, request)
    expected_texts = [with_tags(e.text, t) for e, t in zip(examples, tags, strict=True)]
    expected_texts[2] = examples[2].text
    np.testing.assert_allclose(
        response.new_text_embeddings, model.embed_texts(expected_texts), atol=1e-6
    )
    trained = cached_embeddings(model.backbone, dataset, cache_dir, tagger=tagger)
    np.testing.assert_allclose(
        response.new_text_embeddings[[0, 1, 3, 4, 5]], trained.text[[0, 1, 3, 4, 5]], atol=1e-4
    )
    # Without a cache only the images and the tagged captions are encoded: the same vectors.
    uncached = cached_embeddings(
        model.backbone, replace(dataset, examples=examples), None, tagger=tagger
    )
    np.testing.assert_allclose(uncached.text, trained.text[:6], atol=1e-4)
    np.testing.assert_allclose(uncached.image, trained.image[:6], atol=1e-4)
    has_image = np.array([True, True, False, True, True, True])
    local = score_captions(model, [e.text for e in examples], image * has_image[:, None], has_image)
    np.testing.assert_allclose(response.scores, local, atol=1e-5)
    # One caption under two images of different tags: two texts, two vectors.
    other = next(j for j, t in enumerate(tags) if t != tags[0])
    same = ScoreRequest(
        [0, 1],
        pixels[[0, other]],
        np.zeros((0, model.image_embedding_dim), np.float32),
        [0, 1],
        ["one caption", "one caption"],
        np.zeros((0, model.text_embedding_dim), np.float32),
    )
    vectors = score_request(model, same).new_text_embeddings
    assert not np.allclose(vectors[0], vectors[1])


def test_the_worker_keys_a_tagged_text_by_its_image_too() -> None:
    posts = [
        _decoded("p0", "a" * 64, "same caption"),
        _decoded("p1", "b" * 64, "same caption"),
        _decoded("p2", "a" * 64, "same caption"),
        _decoded("p3", None, "same caption"),
    ]
    plain = embedding_signals("m-1", 4, 2, reads_image_text=False)
    tagged = embedding_signals("m-1", 4, 2, reads_image_text=False, object_tags=True)
    cache = cast(FeatureCache, DictCache({}))
    assert build_request(posts, cache, plain, 8).request.texts == ["same caption"]
    built = build_request(posts, cache, tagged, 8)
    assert built.request.texts == ["same caption"] * 3
    assert built.request.caption_index == [0, 1, 0, 2]
    assert built.text_hashes[2] == text_digest("same caption")  # no image: no tags
    assert len(set(built.text_hashes)) == 3
