"""The replica answers semantic similarities in the scoring pass, from the same embeddings it
scores with: freshly encoded or sent from the cache. Uses the small fake model of
test_semantic_banks (ProjectionModel, behind the ModerationModel interface); no Ray."""

from __future__ import annotations

import numpy as np
import pytest

from moderator.retrieval.bank import SemanticBank
from moderator.retrieval.importer import BankItem, item_text
from moderator.retrieval.joint import entry_vectors
from moderator.retrieval.serving import SemanticBanks
from moderator.retrieval.settings import SemanticBankSettings
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest
from moderator.serving.recent import RecentEmbeddings
from moderator.serving.scoring import merge_requests, model_info, score_request, split_response
from tests.unit.test_semantic_banks import IMAGE_DIM, SIZE, TEXT_DIM, ProjectionModel

CAPTIONS = ["they are vermin", "go back home", "nice cat"]


def _pixels(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (count, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def setup() -> tuple[ProjectionModel, np.ndarray, SemanticBanks]:
    model = ProjectionModel()
    pixels = _pixels(0, 3)
    texts = [item_text(BankItem("x", None, c), model.reads_image_text) for c in CAPTIONS]
    flags = np.ones(3, dtype=bool)
    vectors = entry_vectors(model.embed_images(pixels), flags, model.embed_texts(texts), flags)
    bank = SemanticBank("memes", model.model_version, IMAGE_DIM, TEXT_DIM, vectors, ["a", "b", "c"])
    return model, pixels, SemanticBanks([bank], SemanticBankSettings())


def test_fresh_and_cached_rows_get_the_same_similarity(
    setup: tuple[ProjectionModel, np.ndarray, SemanticBanks],
) -> None:
    model, pixels, banks = setup
    cached_image = model.embed_images(pixels[1:2])
    cached_text = model.embed_texts([CAPTIONS[1]])
    request = ScoreRequest(
        # row 0: entry a, encoded here; row 1: entry b from the cache; row 2: b's image
        # alone (encoded); row 3: neither side; row 4: an unrelated image and caption
        image_index=[0, 3, 1, NO_IMAGE, 2],
        pixels=np.concatenate([pixels[0:2], _pixels(9, 1)]),
        cached_image_embeddings=cached_image,
        caption_index=[0, 2, NO_TEXT, NO_TEXT, 1],
        texts=[CAPTIONS[0], "an unrelated sunny beach photo"],
        cached_text_embeddings=cached_text,
        image_keys=["k0", "k1", "k9"],
    )
    response = score_request(model, request, RecentEmbeddings(16), banks)
    matches = response.semantic["memes"]
    assert matches.nearest[:4] == ["a", "b", "b", ""]
    np.testing.assert_allclose(matches.similarity[:3], 1.0, atol=1e-5)
    assert matches.similarity[3] == 0.0
    assert matches.similarity[4] < 0.9
    assert response.semantic_ms >= 0.0
    assert model_info(model, banks).semantic_banks == {"memes": 3}


def test_merged_requests_get_their_own_rows_back(
    setup: tuple[ProjectionModel, np.ndarray, SemanticBanks],
) -> None:
    model, pixels, banks = setup
    empty = np.zeros((0, IMAGE_DIM), np.float32)
    empty_text = np.zeros((0, TEXT_DIM), np.float32)
    first = ScoreRequest([0], pixels[2:3], empty, [0], [CAPTIONS[2]], empty_text)
    second = ScoreRequest([0, NO_IMAGE], pixels[0:1], empty, [0, 1], CAPTIONS[:2], empty_text)
    merged, rows = merge_requests([first, second], IMAGE_DIM, TEXT_DIM)
    parts = split_response(score_request(model, merged, None, banks), [first, second], rows)
    assert parts[0].semantic["memes"].nearest == ["c"]
    assert parts[1].semantic["memes"].nearest == ["a", "b"]
    np.testing.assert_allclose(parts[1].semantic["memes"].similarity, 1.0, atol=1e-5)


def test_no_banks_no_semantic_answer(
    setup: tuple[ProjectionModel, np.ndarray, SemanticBanks],
) -> None:
    model, pixels, _ = setup
    empty = np.zeros((0, IMAGE_DIM), np.float32)
    request = ScoreRequest([0], pixels[:1], empty, [NO_TEXT], [], np.zeros((0, TEXT_DIM)))
    assert score_request(model, request).semantic == {}
