"""Text inside the image: PP-OCR detection and recognition (rapidocr, onnxruntime).

Detection finds the text boxes on a copy of the image whose longest side is capped
(`ocr.max_side`); recognition then reads only those boxes, at most `ocr.max_boxes`, in reading
order, in small batches until the per-image time budget (`ocr.max_seconds`) runs out. A post
that hits a cap is decided with what was read, and ``truncated`` says so (the worker adds the
``image_text_truncated`` problem). The three ONNX models ship inside the rapidocr wheel
(Apache-2.0, weights from PaddleOCR, Apache-2.0); they are loaded by path, so nothing is ever
downloaded. One engine per thread: rapidocr's objects are not documented as thread-safe, and
onnxruntime releases the GIL, so threads read images side by side.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from moderator.signals.base import FieldType, PerThread, Signal, SignalOutput, SignalSubject
from moderator.signals.settings import OcrSettings, SignalSettings
from moderator.text import normalise_text

logger = logging.getLogger(__name__)

MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}
_RECOGNITION_BATCH = 8
# rapidocr enlarges an image whose short side is under 30 px until it reaches 30, keeping the
# aspect: a 1 x 960 strip became 30 x 28,800 (7 s and ~0.9 GB here). Thinner than 12 px holds
# no legible text; 12-29 px is padded to 32 instead of enlarged.
_MIN_SIDE, _PADDED_SIDE = 12, 32
# Small images (real memes are often ~300 px) are enlarged until the short side is 480 px,
# never past ocr.max_side on the long side: word recall on HarMeme dev 0.771 → 0.817
# (docs/ocr.md). rapidocr's own enlargement has no cap on the long side, so it is not used.
_READ_SHORT_SIDE = 480
# CJK ideographs and punctuation: dropped when only Latin script is to be read.
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uff0f]+")


def model_dir() -> Path:
    """The folder of the ONNX models inside the installed rapidocr package."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


class OcrEngine:
    """One rapidocr pipeline (detection, recognition) for one thread."""

    def __init__(self, settings: OcrSettings) -> None:
        from rapidocr import RapidOCR

        models = model_dir()
        missing = [name for name in MODEL_FILES.values() if not (models / name).is_file()]
        if missing:
            raise FileNotFoundError(f"rapidocr models missing from {models}: {missing}")
        params: dict[str, Any] = {
            "Global.log_level": "warning",
            "Global.use_cls": False,  # memes and screenshots are upright; saves a model pass
            "Global.max_side_len": settings.max_side,
            # Detect at the size _enlarge_small gives: rapidocr's default enlarges every image
            # until its short side is 736 px with no cap on the long side (a thin strip became
            # tens of thousands of pixels long), and doubled the time per meme (docs/ocr.md).
            "Det.limit_type": "max",
            "Det.limit_side_len": settings.max_side,
            "Global.text_score": settings.min_confidence,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": settings.device == "cuda",
        }
        for stage, filename in MODEL_FILES.items():
            params[f"{stage}.model_path"] = str(models / filename)
        self._ocr = RapidOCR(params=params)
        self._settings = settings

    def read(self, image: np.ndarray) -> tuple[list[str], list[float], bool]:
        """Lines of text (reading order), their confidences, and whether a cap cut it short."""
        from rapidocr.main import RapidOCRError

        settings, started = self._settings, time.perf_counter()
        if min(image.shape[:2]) < _MIN_SIDE:
            return [], [], False
        image = _enlarge_small(_pad_thin(image), settings.max_side)
        resized, record = self._ocr.preprocess_img(image)
        try:
            crops, detected = self._ocr.detect_and_crop(resized, record)
        except RapidOCRError:
            return [], [], False  # no text found
        truncated = len(crops) > settings.max_boxes
        crops = crops[: settings.max_boxes]
        lines: list[str] = []
        scores: list[float] = []
        for start in range(0, len(crops), _RECOGNITION_BATCH):
            # The first batch is always read: a stalled CPU must not turn a meme into no text.
            if start and time.perf_counter() - started > settings.max_seconds:
                truncated = True
                break
            result = self._ocr.recognize_txt(crops[start : start + _RECOGNITION_BATCH])
            for text, score in zip(result.txts or (), result.scores or (), strict=True):
                if score >= settings.min_confidence and text.strip():
                    lines.append(text.strip())
                    scores.append(float(score))
        del detected
        return lines, scores, truncated


def _enlarge_small(image: np.ndarray, max_side: int) -> np.ndarray:
    """`image` enlarged (bicubic) towards a 480-px short side, its long side kept ≤ max_side."""
    height, width = image.shape[:2]
    scale = min(_READ_SHORT_SIDE / min(height, width), max_side / max(height, width))
    if scale <= 1.05:
        return image
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _pad_thin(image: np.ndarray) -> np.ndarray:
    """An image with a side under 32 px, padded (edge pixels repeated) to 32 on that side."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, _PADDED_SIDE - height), max(0, _PADDED_SIDE - width)
    if not pad_h and not pad_w:
        return image
    widths = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    return np.pad(image, widths, mode="edge")


class OcrSignal(Signal):
    """``signals.ocr``: the text read from the image (also ``post.image_text``)."""

    name: ClassVar[str] = "ocr"
    version: ClassVar[str] = "3"
    needs = frozenset({"reading_image"})
    runs_in = "pool"
    cost = "heavy"
    fields: ClassVar[Mapping[str, FieldType]] = {
        "text": "string",
        "lines": "int",
        "confidence": "double",
        "truncated": "bool",
    }
    empty: ClassVar[SignalOutput] = {"text": "", "lines": 0, "confidence": 0.0, "truncated": False}

    def __init__(self, settings: OcrSettings) -> None:
        self.settings = settings
        self.reading_side = settings.max_side
        self._engines = PerThread(lambda: OcrEngine(settings))

    @classmethod
    def from_settings(cls, settings: SignalSettings) -> OcrSignal | None:
        return cls(settings.ocr) if settings.ocr.enabled else None

    @classmethod
    def model_version(cls) -> str:
        return f"rapidocr-{package_version('rapidocr')}-ppocrv6s"

    @property
    def qualified_version(self) -> str:
        # The settings that change what is read are part of the key: a cached read made under
        # other caps is not reused.
        s = self.settings
        langs = "+".join(sorted(s.languages))
        return (
            f"{self.version}-{self.model_version()}-{langs}-s{s.max_side}-b{s.max_boxes}"
            f"-c{s.min_confidence:g}-n{s.max_chars}"
        )

    def engine(self) -> OcrEngine:
        return self._engines.get()

    def compute(self, subject: SignalSubject) -> SignalOutput:
        assert subject.reading_image is not None
        lines, scores, truncated = self.engine().read(subject.reading_image)
        if "ch" not in self.settings.languages:
            lines = [line for line in (_CJK.sub(" ", text).strip() for text in lines) if line]
        # Normalised like captions (hidden characters, NFKC, look-alikes): what the model, the
        # term lists and the record read.
        text = normalise_text(" ".join(lines)).text
        if len(text) > self.settings.max_chars:
            text, truncated = text[: self.settings.max_chars], True
        return {
            "text": text,
            "lines": len(lines),
            "confidence": round(float(np.mean(scores)), 4) if scores else 0.0,
            "truncated": truncated,
        }
