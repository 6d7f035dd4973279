"""What a signal is: one small class per thing a post shows besides the classifier's scores.

In the manner of python-threatexchange's signal types: a signal declares its name (policies read
its outputs as ``signals.<name>.<field>``), a version (part of its cache key: bump it when the
outputs change), what it needs from the post, where it runs, what it costs and the fields it
outputs. `compute` reads one post's `SignalSubject` and returns those fields. Adding a signal is
one file, one line in `moderator.signals.registry` and its contract test
(tests/unit/test_signal_contract.py runs the same checks on every registered signal).

Where a signal runs:
- ``ingest``: while the worker decodes the post, from the bytes or pixels in hand (digests);
  cheap enough to run inline, never cached.
- ``pool``: on the worker's signal threads, after decoding and before the batch is scored,
  with its outputs cached in Redis by image digest and signal version (OCR, image safety).
  Never on the classifier replicas, so a slow signal cannot hold up a forward pass.
- ``replica``: on the Classifier replica, in the forward batch, with the model's encoders
  (the embeddings, moderator.signals.embeddings). The worker looks the outputs up in the
  feature cache by `cache_key` first and sends only the misses to be computed.

Outputs are JSON values that policies read, except ``vector`` fields (embeddings): those are
float32 arrays for other signals on the replica, cached as raw vectors, never seen by rules.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np

from moderator.signals.settings import SignalSettings

Need = Literal["image_bytes", "pixels", "reading_image", "caption"]
Place = Literal["ingest", "pool", "replica"]
Cost = Literal["trivial", "moderate", "heavy"]
"""trivial: microseconds (a digest); moderate: about a millisecond; heavy: tens of
milliseconds or more per image (a neural network on the CPU)."""
FieldType = Literal["string", "double", "int", "bool", "list", "vector"]

_PYTHON_TYPES: dict[FieldType, tuple[type, ...]] = {
    "string": (str,),
    "double": (float,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "vector": (np.ndarray,),
}
NAME = re.compile(r"^[a-z][a-z0-9_]*$")

SignalOutput = Mapping[str, Any]
"""Field name → value (JSON types only: the outputs are cached as JSON and read by policies)."""


@dataclass(frozen=True, slots=True)
class SignalSubject:
    """What a signal may read of one post; only the parts some signal needs are filled in."""

    image_sha256: str | None = None
    """Content digest of the image bytes; None when the post has no readable image."""
    image_bytes: bytes | None = None
    """The image file as received (inline or fetched); only while decoding (``ingest``)."""
    pixels: np.ndarray | None = None
    """The classifier's input: square RGB uint8, resized."""
    reading_image: np.ndarray | None = None
    """RGB uint8 at a resolution for reading text (aspect kept, longest side capped)."""
    caption: str = ""
    """The normalised caption."""
    image_text: str = ""
    """The text OCR read in the image; filled in once the pool signals ran (the text embedding
    of a model trained on image text reads it)."""


class Signal(ABC):
    """One signal. Subclasses set the class attributes and implement `compute`."""

    name: ClassVar[str]
    version: ClassVar[str]
    needs: ClassVar[frozenset[Need]]
    runs_in: ClassVar[Place]
    cost: ClassVar[Cost]
    fields: ClassVar[Mapping[str, FieldType]]
    """Every field `compute` returns, with its type; policies can name all but vectors."""
    empty: ClassVar[SignalOutput]
    """The outputs for a post without the parts this signal reads (no image, say)."""
    categories: ClassVar[Mapping[str, str]] = {}
    """Category → output field: a score the worker adds to the decision's scores for these
    categories when the model does not score them itself (image safety's ``sexual``)."""
    reading_side: int | None = None
    """Signals that need ``reading_image``: the longest side they read (the decoder's cap)."""

    @classmethod
    def policy_fields(cls) -> dict[str, FieldType]:
        """The fields rules can read: ``signals.<name>.<field>``."""
        return {name: kind for name, kind in cls.fields.items() if kind != "vector"}

    @classmethod
    def from_settings(cls, settings: SignalSettings) -> Signal | None:
        """This signal as configured, or None when the settings switch it off."""
        return cls()

    @property
    def qualified_version(self) -> str:
        """The version in cache keys; a signal whose outputs depend on settings adds them."""
        return self.version

    def applies_to(self, subject: SignalSubject) -> bool:
        """Whether the post has what this signal reads; otherwise its outputs are `empty`."""
        needs_image = self.needs & {"image_bytes", "pixels", "reading_image"}
        return not needs_image or all(getattr(subject, need) is not None for need in needs_image)

    def cache_key(self, subject: SignalSubject) -> str | None:
        """Redis key of this post's outputs (``pool`` signals), or None: nothing to cache.

        Signals that read only the image are keyed by its digest, so a repost with another
        caption still skips the work.
        """
        if self.runs_in != "pool" or subject.image_sha256 is None or "caption" in self.needs:
            return None
        return f"{self.name}:{self.qualified_version}:{subject.image_sha256}"

    @abstractmethod
    def compute(self, subject: SignalSubject) -> SignalOutput:
        """The outputs for one post that `applies_to`; each field of `fields`, nothing else."""

    def run(self, subject: SignalSubject) -> SignalOutput:
        """`compute` for a post it applies to, else `empty`."""
        return self.compute(subject) if self.applies_to(subject) else self.empty


def check_output(signal: Signal, output: SignalOutput) -> list[str]:
    """What is wrong with one output against the signal's declared fields ([] when nothing)."""
    problems = []
    if set(output) != set(signal.fields):
        problems.append(f"fields {sorted(output)} are not the declared {sorted(signal.fields)}")
    for name, kind in signal.fields.items():
        value = output.get(name)
        if name in output and not _is_type(value, kind):
            problems.append(f"{name}={value!r} is not a {kind}")
    return problems


def _is_type(value: Any, kind: FieldType) -> bool:
    if kind == "vector":
        return (
            isinstance(value, np.ndarray)
            and value.dtype == np.float32
            and value.ndim == 1
            and bool(np.isfinite(value).all())
        )
    if kind in ("int", "double") and isinstance(value, bool):
        return False  # bool is an int in Python, never in CEL
    return isinstance(value, _PYTHON_TYPES[kind])


T = TypeVar("T")


class PerThread(Generic[T]):
    """One `T` per thread, built on first use there. Model sessions of the pool signals: their
    runtimes are not documented as thread-safe, and onnxruntime releases the GIL, so each
    signal thread runs its own side by side."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> T:
        value: T | None = getattr(self._local, "value", None)
        if value is None:
            value = self._local.value = self._factory()
        return value
