"""OCR (moderator.signals.ocr) on text rendered into images: what it reads, and its caps."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from moderator.demo.memes import render_meme
from moderator.signals import OcrSettings, SignalSubject
from moderator.signals.ocr import MODEL_FILES, OcrSignal, model_dir

PHRASES = [
    "when the vaccine finally arrives",
    "nobody reads the terms of service",
    "monday morning standup again",
]


def _reading(text: str, seed: int, **options: object) -> SignalSubject:
    image = render_meme(text, np.random.default_rng(seed), **options)  # type: ignore[arg-type]
    return SignalSubject(image_sha256=f"{seed:064x}", reading_image=np.asarray(image))


def _words(text: str) -> set[str]:
    return {w.strip(".,!?'\"").lower() for w in text.split()}


@pytest.fixture(scope="module")
def ocr() -> OcrSignal:
    return OcrSignal(OcrSettings())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("OCR tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


@pytest.mark.parametrize("seed", range(len(PHRASES)))
def test_reads_the_words_in_the_image(ocr: OcrSignal, seed: int) -> None:
    text = PHRASES[seed]
    out = ocr.run(_reading(text, seed, layout="plain", distort=False, jpeg=False))
    found = _words(str(out["text"]))
    recall = len(_words(text) & found) / len(_words(text))
    assert recall >= 0.75, (text, out)
    assert out["lines"] >= 1 and 0.5 <= float(out["confidence"]) <= 1
    assert out["truncated"] is False


def test_an_image_without_text_reads_as_empty(ocr: OcrSignal) -> None:
    flat = np.full((300, 400, 3), 128, dtype=np.uint8)
    out = ocr.run(SignalSubject(image_sha256="0" * 64, reading_image=flat))
    assert out == {"text": "", "lines": 0, "confidence": 0.0, "truncated": False}


def test_models_load_from_the_wheel_without_any_download(no_network: None) -> None:
    assert all((model_dir() / name).is_file() for name in MODEL_FILES.values())
    fresh = OcrSignal(OcrSettings())  # a new engine in this thread, network refused
    out = fresh.run(_reading("offline only", 5, layout="plain", distort=False, jpeg=False))
    assert "offline" in str(out["text"]).lower()


def test_box_cap_truncates_and_says_so() -> None:
    long_text = " ".join(f"line{i} says words" for i in range(12))
    capped = OcrSignal(OcrSettings(max_boxes=1))
    out = capped.run(_reading(long_text, 8, layout="plain", distort=False, jpeg=False))
    assert out["truncated"] is True and out["lines"] <= 1


def test_time_cap_truncates_and_says_so() -> None:
    long_text = " ".join(f"row{i} of text" for i in range(20))
    hurried = OcrSignal(OcrSettings(max_seconds=1e-6))
    out = hurried.run(_reading(long_text, 9, layout="plain", distort=False, jpeg=False))
    # The first batch of boxes is always read; the rest waited for no one.
    assert out["truncated"] is True and 1 <= out["lines"] <= 8


def test_character_cap_truncates_and_says_so() -> None:
    short = OcrSignal(OcrSettings(max_chars=16))
    out = short.run(_reading(PHRASES[1], 1, layout="plain", distort=False, jpeg=False))
    assert len(str(out["text"])) <= 16 and out["truncated"] is True


def test_settings_that_change_the_reading_change_the_cache_key() -> None:
    keys = {
        OcrSignal(settings).qualified_version
        for settings in (OcrSettings(), OcrSettings(max_boxes=5), OcrSettings(max_side=640))
    }
    assert len(keys) == 3


def test_unknown_language_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from"):
        OcrSettings(languages=["fr"])


@pytest.mark.parametrize("shape", [(1, 960), (960, 1), (11, 700), (3, 3)])
def test_slivers_read_as_empty_without_enlarging(ocr: OcrSignal, shape: tuple[int, int]) -> None:
    # rapidocr would enlarge a 1 x 960 strip to 30 x 28,800 before detection.
    sliver = np.full((*shape, 3), 30, dtype=np.uint8)
    out = ocr.run(SignalSubject(image_sha256="1" * 64, reading_image=sliver))
    assert out["text"] == "" and out["truncated"] is False


def test_a_thin_banner_is_padded_and_read(ocr: OcrSignal) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from moderator.demo.memes import font_dir

    banner = Image.new("RGB", (420, 26), "white")
    font = ImageFont.truetype(str(font_dir() / "DejaVuSans-Bold.ttf"), 18)
    ImageDraw.Draw(banner).text((6, 2), "limited offer today", fill="black", font=font)
    out = ocr.run(SignalSubject(image_sha256="2" * 64, reading_image=np.asarray(banner)))
    assert {"limited", "offer"} <= _words(str(out["text"]))
