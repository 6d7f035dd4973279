"""Semantic banks: joint vectors, the bank file, version checks, exact and IVF search.

Uses a small fake behind the ModerationModel interface (`ProjectionModel`: fixed random
projections of the pixels and of a character histogram; no torch weights) so a bank can be
built, searched and scored in milliseconds. faiss runs for real.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from moderator.retrieval.bank import SemanticBank, SemanticBankError, load_bank
from moderator.retrieval.importer import build_bank, read_items
from moderator.retrieval.index import ExactIndex, IvfIndex
from moderator.retrieval.joint import entry_vectors, query_vectors, similarities
from moderator.retrieval.serving import (
    SemanticBanks,
    load_semantic_banks,
)
from moderator.retrieval.settings import SemanticBankSettings

IMAGE_DIM, TEXT_DIM, SIZE = 16, 8, 8


class ProjectionModel:
    """Image embedding: a fixed random projection of the pixels; text: of a letter histogram."""

    categories: ClassVar[list[str]] = ["hate"]
    image_size = SIZE
    image_embedding_dim = IMAGE_DIM
    text_embedding_dim = TEXT_DIM
    reads_image_text = True

    def __init__(self, model_version: str = "proj-1") -> None:
        self.model_version = model_version
        rng = np.random.default_rng(7)
        self._image = rng.normal(size=(SIZE * SIZE * 3, IMAGE_DIM)).astype(np.float32)
        self._text = rng.normal(size=(26, TEXT_DIM)).astype(np.float32)

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255 - 0.5
        out: np.ndarray = flat @ self._image
        return out

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        counts = np.zeros((len(captions), 26), dtype=np.float32)
        for row, caption in enumerate(captions):
            for char in caption.lower():
                if "a" <= char <= "z":
                    counts[row, ord(char) - 97] += 1
        out: np.ndarray = counts @ self._text
        return out

    def score(
        self, text: np.ndarray, has_text: np.ndarray, image: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        return np.zeros((len(has_text), 1), dtype=np.float32)


def _brute_force(
    query_image: np.ndarray,
    query_has_image: np.ndarray,
    query_text: np.ndarray,
    query_has_text: np.ndarray,
    image: np.ndarray,
    has_image: np.ndarray,
    text: np.ndarray,
    has_text: np.ndarray,
) -> np.ndarray:
    """The definition, one pair at a time: mean cosine over the sides both have."""

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    out = np.full((len(query_image), len(image)), -np.inf)
    for q in range(len(query_image)):
        for e in range(len(image)):
            parts = []
            if query_has_image[q] and has_image[e]:
                parts.append(cos(query_image[q], image[e]))
            if query_has_text[q] and has_text[e]:
                parts.append(cos(query_text[q], text[e]))
            if parts:
                out[q, e] = np.mean(parts)
    return out


def _random_sides(rng: np.random.Generator, count: int) -> tuple[np.ndarray, ...]:
    image = rng.normal(size=(count, IMAGE_DIM)).astype(np.float32)
    text = rng.normal(size=(count, TEXT_DIM)).astype(np.float32)
    kind = rng.integers(0, 3, count)  # 0 both, 1 image only, 2 text only
    return image, kind != 2, text, kind != 1


def test_similarity_is_the_mean_cosine_over_shared_sides_including_one_sided_rows() -> None:
    rng = np.random.default_rng(1)
    entries = _random_sides(rng, 40)
    queries = list(_random_sides(rng, 12))
    queries[1][0] = queries[3][0] = False  # a row with neither side
    stored = entry_vectors(*entries)
    joint, q_image, q_text = query_vectors(*queries)
    e_image, e_text = entries[1], entries[3]
    ours = similarities(joint, q_image, q_text, stored, e_image, e_text)
    expected = _brute_force(*queries, *entries)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert np.all(np.isneginf(ours[0]))  # nothing to compare: never a match
    # A two-sided entry is a unit vector; a one-sided one has norm 1/sqrt(2).
    norms = np.linalg.norm(stored, axis=1)
    both = entries[1] & entries[3]
    np.testing.assert_allclose(norms[both], 1.0, atol=1e-6)
    np.testing.assert_allclose(norms[~both], 2**-0.5, atol=1e-6)


def test_an_image_only_repost_of_a_captioned_entry_scores_its_image_cosine() -> None:
    rng = np.random.default_rng(2)
    image, _, text, _ = _random_sides(rng, 1)
    stored = entry_vectors(image, np.array([True]), text, np.array([True]))
    joint, q_image, q_text = query_vectors(image * 3, [True], text, [False])
    assert similarities(joint, q_image, q_text, stored, [True], [True])[0, 0] == pytest.approx(1.0)


def test_exact_search_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    entries = _random_sides(rng, 300)
    queries = _random_sides(rng, 20)
    index = ExactIndex(entry_vectors(*entries), IMAGE_DIM)
    best, where = index.search(*query_vectors(*queries))
    expected = _brute_force(*queries, *entries)
    np.testing.assert_allclose(best, expected.max(axis=1), atol=1e-5)
    np.testing.assert_array_equal(where, expected.argmax(axis=1))


def test_ivf_search_finds_what_exact_search_finds_for_near_duplicates() -> None:
    """Recall@1 of the IVF index against exact search, queries = noisy copies of entries."""
    rng = np.random.default_rng(4)
    count = 6000
    image = rng.normal(size=(count, 48)).astype(np.float32)
    text = rng.normal(size=(count, 16)).astype(np.float32)
    flags = np.ones(count, dtype=bool)
    stored = entry_vectors(image, flags, text, flags)
    picks = rng.choice(count, 200, replace=False)
    noisy_image = image[picks] + 0.3 * rng.normal(size=(200, 48)).astype(np.float32)
    noisy_text = text[picks] + 0.3 * rng.normal(size=(200, 16)).astype(np.float32)
    queries = query_vectors(noisy_image, flags[:200], noisy_text, flags[:200])
    exact_best, exact_where = ExactIndex(stored, 48).search(*queries)
    ivf = IvfIndex(stored, 48, nprobe=8, threads=1)
    assert ivf.lists > 8  # the index probes a fraction of its lists
    ivf_best, ivf_where = ivf.search(*queries)
    recall = float(np.mean(ivf_where == exact_where))
    assert recall >= 0.95, recall
    agree = ivf_where == exact_where
    np.testing.assert_allclose(ivf_best[agree], exact_best[agree], atol=1e-5)


def _images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _sources(tmp_path: Path) -> list[Path]:
    images = _images(tmp_path, 3)
    rows = tmp_path / "posts.jsonl"
    rows.write_text(
        json.dumps({"id": "meme-a", "img": "img0.png", "text": "they are vermin"})
        + "\n"
        + json.dumps({"id": "meme-b", "text": "go back home", "image_text": "stop"})
        + "\n"
    )
    return [rows, images[1], images[2]]


def test_import_save_load_round_trip(tmp_path: Path) -> None:
    model = ProjectionModel()
    bank = build_bank("known_bad", model, read_items(_sources(tmp_path)))
    assert bank.ids == ["meme-a", "meme-b", "img1.png", "img2.png"]
    loaded = load_bank(bank.save(tmp_path / "bank"))
    assert (loaded.name, loaded.model_version, len(loaded)) == ("known_bad", "proj-1", 4)
    np.testing.assert_array_equal(loaded.vectors, bank.vectors)
    assert loaded.ids == bank.ids
    meta = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert meta["entries"] == 4 and meta["vector"].startswith("joint-v1")


def test_bank_import_command_builds_the_bank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moderator.model
    from moderator.cli import app

    monkeypatch.setattr(moderator.model, "load_model", lambda checkpoint: ProjectionModel())
    out = tmp_path / "bank"
    sources = [str(s) for s in _sources(tmp_path)]
    result = CliRunner().invoke(
        app, ["bank", "import", "--semantic", "known_bad", "--out", str(out), *sources]
    )
    assert result.exit_code == 0, result.output
    assert len(load_bank(out)) == 4


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("not json", "posts.jsonl:1: not JSON"),
        ('{"id": "x"}', "posts.jsonl:1: the row has no image and no text"),
        ('{"img": "missing.png"}', "missing.png does not exist"),
        ('{"text": 3}', "posts.jsonl:1: text must be a string"),
    ],
)
def test_bad_rows_stop_the_import_naming_file_and_line(
    tmp_path: Path, row: str, message: str
) -> None:
    (tmp_path / "posts.jsonl").write_text(row + "\n")
    with pytest.raises(SemanticBankError, match=message):
        read_items([tmp_path / "posts.jsonl"])


def test_a_corrupt_image_stops_the_import(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SemanticBankError, match=r"bad\.png: cannot decode the image"):
        build_bank("b", ProjectionModel(), read_items([tmp_path / "bad.png"]))


def _saved(tmp_path: Path, version: str) -> Path:
    model = ProjectionModel(version)
    return build_bank("known_bad", model, read_items(_sources(tmp_path))).save(tmp_path / "bank")


def test_a_bank_of_another_model_version_is_refused_naming_both(tmp_path: Path) -> None:
    settings = SemanticBankSettings(banks=[_saved(tmp_path, "proj-1")])
    with pytest.raises(SemanticBankError) as caught:
        load_semantic_banks(settings, "proj-2", (IMAGE_DIM, TEXT_DIM))
    message = str(caught.value)
    assert "known_bad" in message and "proj-1" in message and "proj-2" in message


def test_the_arithmetic_suffix_may_differ_but_not_the_dims(tmp_path: Path) -> None:
    settings = SemanticBankSettings(banks=[_saved(tmp_path, "proj-1")])
    served = load_semantic_banks(settings, "proj-1+cuda-fp16", (IMAGE_DIM, TEXT_DIM))
    assert served.entries() == {"known_bad": 4}
    with pytest.raises(SemanticBankError, match="dims"):
        load_semantic_banks(settings, "proj-1", (IMAGE_DIM, TEXT_DIM + 1))


def test_a_corrupt_bank_file_is_refused_naming_the_bank(tmp_path: Path) -> None:
    path = _saved(tmp_path, "proj-1")
    (path / "vectors.safetensors").write_bytes(b"garbage")
    with pytest.raises(SemanticBankError, match=re.escape(str(path))):
        load_bank(path)


def test_search_reports_zero_and_no_id_for_rows_with_nothing_to_compare() -> None:
    rng = np.random.default_rng(5)
    image, has_image, text, has_text = _random_sides(rng, 10)
    bank = SemanticBank(
        "b",
        "proj-1",
        IMAGE_DIM,
        TEXT_DIM,
        entry_vectors(image, has_image, text, has_text),
        [f"e{i}" for i in range(10)],
    )
    banks = SemanticBanks([bank], SemanticBankSettings())
    rows = np.array([True, False])
    matches = banks.search(image[:2], rows & has_image[:2], text[:2], rows & has_text[:2])["b"]
    assert matches.nearest == ["e0", ""]
    assert matches.similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert matches.similarity[1] == 0.0
