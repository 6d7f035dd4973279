"""A Classifier app with a semantic bank, on the session's Ray instance: ModelInfo lists the
bank, and every row of a batch gets its best match, whether its embeddings are encoded on the
replica or sent from the cache (starter model; generated images and captions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ray import serve

from moderator.model import load_model
from moderator.retrieval.importer import BankItem, build_bank, model_pixels
from moderator.retrieval.settings import SemanticBankSettings
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.runner import deploy_classifier
from moderator.serving_settings import ServingSettings

pytestmark = pytest.mark.integration
APP = "semantic-test"
CAPTIONS = ["they should all go back where they came from", "a quiet walk in the park"]


def _images(folder: Path) -> list[Path]:
    paths = []
    for i, colour in enumerate([(200, 30, 30), (20, 160, 220)]):
        ramp = np.linspace(0, 1, 96, dtype=np.float32)[:, None, None]
        pixels = (ramp * np.array(colour, np.float32) + (1 - ramp) * 255).astype(np.uint8)
        path = folder / f"meme{i}.png"
        Image.fromarray(np.repeat(pixels, 96, axis=1)).save(path)
        paths.append(path)
    return paths


def test_the_replica_answers_semantic_matches_for_fresh_and_cached_rows(
    ray_serving: ServingSettings, tmp_path: Path
) -> None:
    model = load_model(None)
    images = _images(tmp_path)
    items = [BankItem(f"meme-{i}", path, CAPTIONS[i]) for i, path in enumerate(images)]
    bank_dir = build_bank("known_memes", model, items).save(tmp_path / "bank")
    classifier = ray_serving.classifier.model_copy(
        update={"semantic": SemanticBankSettings(banks=[bank_dir])}
    )
    handle = deploy_classifier(
        ray_serving.model_copy(update={"app_name": APP, "classifier": classifier})
    )
    try:
        info: ModelInfo = handle.model_info.remote().result(timeout_s=120)
        assert info.semantic_banks == {"known_memes": 2}
        size = info.image_size
        pixels = np.stack([model_pixels(images[0], size), model_pixels(images[1], size)])
        no_images = np.zeros((0, info.image_embedding_dim), np.float32)
        no_texts = np.zeros((0, info.text_embedding_dim), np.float32)
        # A repost of meme-0, meme-1's image alone, and a caption unlike either.
        first = ScoreRequest(
            [0, 1, NO_IMAGE],
            pixels,
            no_images,
            [0, NO_TEXT, 1],
            [CAPTIONS[0], "lovely weather for a picnic today"],
            no_texts,
        )
        fresh: ScoreResponse = handle.score_batch.remote(first).result(timeout_s=120)
        matches = fresh.semantic["known_memes"]
        assert matches.nearest[:2] == ["meme-0", "meme-1"]
        np.testing.assert_allclose(matches.similarity[:2], 1.0, atol=1e-4)
        assert matches.similarity[2] < matches.similarity[0]
        # The same repost, its embeddings sent from the cache this time.
        cached = ScoreRequest(
            [0],
            np.zeros((0, size, size, 3), np.uint8),
            fresh.new_image_embeddings[:1],
            [0],
            [],
            fresh.new_text_embeddings[:1],
        )
        again: ScoreResponse = handle.score_batch.remote(cached).result(timeout_s=120)
        assert again.semantic["known_memes"].nearest == ["meme-0"]
        assert again.semantic["known_memes"].similarity[0] == pytest.approx(
            matches.similarity[0], abs=1e-5
        )
    finally:
        serve.delete(APP)
