"""The classifier's embeddings as signals (``replica``): one of the image, one of the text.

The Classifier replica computes them in the forward batch with the model's own encoders
(moderator.serving.scoring); the feature cache (moderator.cache.features) keeps them in Redis
under `cache_key`: the signal, the model version and a content digest. The worker looks them
up before each batch (workers/features.py), so a repost travels as its vectors and is never
encoded again. Worker and replica both take the encoder's input and its key from these
classes, so they cannot disagree on what a cached vector stands for.

The output is one float32 vector, which rules do not read: signals that compare vectors on the
replica (semantic banks) turn them into fields policies can name.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from moderator.signals.base import FieldType, Signal, SignalOutput, SignalSubject
from moderator.signals.settings import SignalSettings
from moderator.text import model_text

if TYPE_CHECKING:
    from moderator.model.base import ModerationModel

EmbeddingKind = Literal["image", "text"]
Encode = Callable[[Any], np.ndarray]
"""A batch of encoder inputs (uint8 pixels [N, S, S, 3], or N texts) → float32 [N, dim]."""

NO_VECTOR: np.ndarray = np.zeros(0, dtype=np.float32)
NO_VECTOR.flags.writeable = False


def text_digest(text: str) -> str:
    """sha256 hex of a model text input's UTF-8: its content digest in cache keys."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_key(kind: EmbeddingKind, model_version: str, digest: str) -> str:
    """The cache key of one embedding (below the feature cache's prefix)."""
    return f"{kind}_embedding:{model_version}:{digest}"


class EmbeddingSignal(Signal):
    """An encoder's vector for one part of the post. Built from the model, not from settings:
    its version is the model's, and only the replica holds the encoder."""

    version: ClassVar[str] = "1"
    runs_in = "replica"
    cost = "heavy"
    fields: ClassVar[Mapping[str, FieldType]] = {"vector": "vector"}
    empty: ClassVar[SignalOutput] = {"vector": NO_VECTOR}
    kind: ClassVar[EmbeddingKind]

    def __init__(self, model_version: str, dim: int, encode: Encode | None = None) -> None:
        self.model_version = model_version
        self.dim = dim
        self._encode = encode

    @classmethod
    def from_settings(cls, settings: SignalSettings) -> Signal | None:
        raise TypeError(f"{cls.name} is built from the model (embedding_signals), not settings")

    @property
    def qualified_version(self) -> str:
        return self.model_version

    @abstractmethod
    def model_input(self, subject: SignalSubject) -> Any:
        """What the encoder reads of this post, or None when it has nothing to read."""

    @abstractmethod
    def digest(self, subject: SignalSubject) -> str | None:
        """Content digest of `model_input` (None: nothing to encode)."""

    def applies_to(self, subject: SignalSubject) -> bool:
        return self.digest(subject) is not None

    def cache_key(self, subject: SignalSubject) -> str | None:
        digest = self.digest(subject)
        return None if digest is None else embedding_key(self.kind, self.model_version, digest)

    def embed(self, inputs: Any) -> np.ndarray:
        """Vectors [N, dim] for a batch of encoder inputs; only where the encoder is loaded."""
        if self._encode is None:
            raise RuntimeError(f"{self.name}: no encoder here (embeddings run on the replica)")
        vectors = np.asarray(self._encode(inputs), dtype=np.float32)
        if vectors.shape != (len(inputs), self.dim):
            raise ValueError(
                f"{self.name}: the encoder returned {vectors.shape}, "
                f"expected ({len(inputs)}, {self.dim})"
            )
        return vectors

    def compute(self, subject: SignalSubject) -> SignalOutput:
        return {"vector": self.embed(self._batch_of_one(self.model_input(subject)))[0]}

    @abstractmethod
    def _batch_of_one(self, item: Any) -> Any:
        """One encoder input as a batch of one."""


class ImageEmbeddingSignal(EmbeddingSignal):
    """The image encoder's vector of the classifier's pixels, keyed by the image file's sha256."""

    name: ClassVar[str] = "image_embedding"
    kind: ClassVar[EmbeddingKind] = "image"
    needs = frozenset({"pixels"})

    def model_input(self, subject: SignalSubject) -> np.ndarray | None:
        return subject.pixels

    def digest(self, subject: SignalSubject) -> str | None:
        return subject.image_sha256 if subject.pixels is not None else None

    def _batch_of_one(self, item: Any) -> np.ndarray:
        return np.asarray(item, dtype=np.uint8)[None]


class TextEmbeddingSignal(EmbeddingSignal):
    """The text encoder's vector of the normalised caption (joined to the image text for a model
    trained on both), keyed by the sha256 of that text: equal texts share one vector.

    For a model trained with object tags the replica joins the image's tags to the text
    (moderator.serving.scoring), so the key covers the image's digest as well: the same caption
    under another image is another vector."""

    name: ClassVar[str] = "text_embedding"
    kind: ClassVar[EmbeddingKind] = "text"
    needs = frozenset({"caption"})

    def __init__(
        self,
        model_version: str,
        dim: int,
        encode: Encode | None = None,
        reads_image_text: bool = False,
        object_tags: bool = False,
    ) -> None:
        super().__init__(model_version, dim, encode)
        self.reads_image_text = reads_image_text
        self.object_tags = object_tags

    def model_input(self, subject: SignalSubject) -> str | None:
        caption = subject.caption
        text = model_text(caption, subject.image_text) if self.reads_image_text else caption
        return text or None

    def digest(self, subject: SignalSubject) -> str | None:
        text = self.model_input(subject)
        if text is None:
            return None
        if self.object_tags and subject.pixels is not None:
            return text_digest(f"{text}\x00image:{subject.image_sha256}")
        return text_digest(text)

    def _batch_of_one(self, item: Any) -> list[str]:
        return [item]


@dataclass(frozen=True, slots=True)
class EmbeddingSignals:
    """The model's two embedding signals."""

    image: ImageEmbeddingSignal
    text: TextEmbeddingSignal


def embedding_signals(
    model_version: str,
    image_dim: int,
    text_dim: int,
    reads_image_text: bool,
    encoders: tuple[Encode, Encode] | None = None,
    object_tags: bool = False,
) -> EmbeddingSignals:
    """Both embedding signals of one model; `encoders` (images, texts) only on the replica."""
    image_encode, text_encode = encoders if encoders is not None else (None, None)
    return EmbeddingSignals(
        ImageEmbeddingSignal(model_version, image_dim, image_encode),
        TextEmbeddingSignal(model_version, text_dim, text_encode, reads_image_text, object_tags),
    )


def model_embeddings(model: ModerationModel) -> EmbeddingSignals:
    """The embedding signals of a loaded model, with its encoders."""
    return embedding_signals(
        model.model_version,
        model.image_embedding_dim,
        model.text_embedding_dim,
        getattr(model, "reads_image_text", False),
        (model.embed_images, model.embed_texts),
        # moderator.model.object_tags.object_tagger, read here without importing torch.
        object_tags=getattr(model, "tagger", None) is not None,
    )
