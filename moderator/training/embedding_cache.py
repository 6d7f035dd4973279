"""Frozen-encoder embeddings of a data set, computed once and cached on disk (safetensors).

The cache file is named by a fingerprint of the backbone (type, id, revision, preprocessing)
and of the data (every caption, image path, image size and modification time), so editing the
data or switching the backbone never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError
from moderator.ingest.image import decode_image
from moderator.model.backbone_base import BackboneEncoder
from moderator.model.object_tags import ImageTagger
from moderator.training.dataset import Dataset
from moderator.training.errors import TrainingDataError

logger = logging.getLogger(__name__)

TEXT_BATCH = 256
IMAGE_BATCH = 32
# Training images come from the operator's own files: allow large ones, same resize as serving.
TRAINING_DECODE_LIMITS = DecodeLimits(
    max_image_bytes=64 * 1024 * 1024, max_image_pixels=200_000_000
)


def default_cache_dir() -> Path:
    """$MODERATOR_CACHE_DIR, else ~/.cache/moderator/embeddings."""
    env = os.environ.get("MODERATOR_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "moderator" / "embeddings"


@dataclass(frozen=True)
class Embeddings:
    """Per example: caption embedding, image embedding (zeros without an image), has_image."""

    text: np.ndarray  # float32 [N, Dt]
    image: np.ndarray  # float32 [N, Di]
    has_image: np.ndarray  # bool [N]

    def subset(self, indices: np.ndarray) -> Embeddings:
        return Embeddings(self.text[indices], self.image[indices], self.has_image[indices])


def backbone_fingerprint(backbone: BackboneEncoder) -> str:
    payload: dict[str, object] = {
        "spec": backbone.spec.model_dump(),
        "pre": backbone.preprocessing.model_dump(),
    }
    # Embeddings computed on a GPU differ slightly from the CPU's: their own cache file. CPU
    # keys stay what they were, so existing caches remain valid.
    if backbone.device.type != "cpu":
        payload["device"] = backbone.device.type
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def data_fingerprint(dataset: Dataset) -> str:
    """sha256 over every row's text and image bytes. The bytes, not the path and mtime: a copied
    or re-created data folder keeps its cache (hashing 70 MB of memes takes well under a second,
    embedding them minutes); a changed image is a new key."""
    digest = hashlib.sha256()
    images: dict[Path, bytes] = {}
    for example in dataset.examples:
        digest.update(example.text.encode("utf-8", "surrogatepass") + b"\x00")
        if example.image is not None:
            if example.image not in images:
                images[example.image] = image_digest(example.image)
            digest.update(images[example.image])
        digest.update(b"\x01")
    return digest.hexdigest()


def image_digest(path: Path) -> bytes:
    """sha256 of an image file; an unreadable one is a TrainingDataError naming it."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").digest()
    except OSError as e:
        raise TrainingDataError(f"cannot read image {path}: {e}") from e


def load_pixels(path: Path, size: int) -> np.ndarray:
    """An image file → uint8 [size, size, 3], decoded and resized exactly as the worker does."""
    try:
        return decode_image(path.read_bytes(), TRAINING_DECODE_LIMITS, size)
    except (OSError, InvalidPostError) as e:
        raise TrainingDataError(f"cannot use image {path}: {e}") from e


def image_rows(dataset: Dataset) -> dict[Path, list[int]]:
    """Each distinct image file → the rows that show it (every image is encoded once)."""
    rows_of: dict[Path, list[int]] = {}
    for i, example in enumerate(dataset.examples):
        if example.image is not None:
            rows_of.setdefault(example.image, []).append(i)
    return rows_of


def encode_texts(
    backbone: BackboneEncoder, texts: list[str], progress: Progress | None = None
) -> np.ndarray:
    """Every text → float32 [N, text_dim], in batches of similar length, with a progress bar."""
    text = np.zeros((len(texts), backbone.text_dim), dtype=np.float32)
    task = progress.add_task("captions", total=len(texts)) if progress else None
    # Sorted by length so every batch pads little; results go back to their rows.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), TEXT_BATCH):
        rows = order[start : start + TEXT_BATCH]
        text[rows] = backbone.encode_texts([texts[i] for i in rows])
        if progress and task is not None:
            progress.advance(task, len(rows))
    return text


def encode_images(
    backbone: BackboneEncoder, dataset: Dataset, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct image once, in batches, with a progress bar: (float32 [N, image_dim],
    zeros for rows without an image; bool has_image [N])."""
    image = np.zeros((len(dataset.examples), backbone.image_dim), dtype=np.float32)
    has_image = np.array([e.image is not None for e in dataset.examples])
    rows_of = image_rows(dataset)
    paths = sorted(rows_of)
    task = progress.add_task("images", total=len(paths)) if progress and paths else None
    size = backbone.preprocessing.image_size
    for start in range(0, len(paths), IMAGE_BATCH):
        chunk = paths[start : start + IMAGE_BATCH]
        vectors = backbone.encode_images(np.stack([load_pixels(p, size) for p in chunk]))
        for path, vector in zip(chunk, vectors, strict=True):
            image[rows_of[path]] = vector
        if progress and task is not None:
            progress.advance(task, len(chunk))
    return image, has_image


def compute_embeddings(
    backbone: BackboneEncoder, dataset: Dataset, progress: Progress | None = None
) -> Embeddings:
    """Encode every caption and every distinct image once, in batches, with progress bars."""
    text = encode_texts(backbone, [e.text for e in dataset.examples], progress)
    return Embeddings(text, *encode_images(backbone, dataset, progress))


def tagged_dataset(
    dataset: Dataset, image: np.ndarray, has_image: np.ndarray, tagger: ImageTagger
) -> Dataset:
    """The data set with each caption joined to its image's object tags (object_tags.py)."""
    texts = tagger.tag_texts([e.text for e in dataset.examples], image, has_image)
    examples = [replace(e, text=t) for e, t in zip(dataset.examples, texts, strict=True)]
    return replace(dataset, examples=examples)


def cached_embeddings(
    backbone: BackboneEncoder,
    dataset: Dataset,
    cache_dir: Path | None,
    progress: Progress | None = None,
    tagger: ImageTagger | None = None,
) -> Embeddings:
    """Embeddings from the cache when present, else computed and written there (None: no cache).

    With a tagger, the captions are joined to their images' object tags first and only the
    tagged captions are encoded, under an entry of their own; the images come from the plain
    entry (written for later runs with or without tags), or are encoded alone without a cache.
    """
    if tagger is not None:
        if cache_dir is None:
            image, has_image = encode_images(backbone, dataset, progress)
        else:
            plain = cached_embeddings(backbone, dataset, cache_dir, progress)
            image, has_image = plain.image, plain.has_image
        tagged = tagged_dataset(dataset, image, has_image, tagger)
        return _cached(
            backbone,
            tagged,
            cache_dir,
            lambda: Embeddings(
                encode_texts(backbone, [e.text for e in tagged.examples], progress),
                image,
                has_image,
            ),
        )
    return _cached(
        backbone, dataset, cache_dir, lambda: compute_embeddings(backbone, dataset, progress)
    )


def _cached(
    backbone: BackboneEncoder,
    dataset: Dataset,
    cache_dir: Path | None,
    compute: Callable[[], Embeddings],
) -> Embeddings:
    if cache_dir is None:
        return compute()
    name = f"{backbone_fingerprint(backbone)[:16]}-{data_fingerprint(dataset)[:16]}.safetensors"
    path = cache_dir / name
    if path.is_file():
        tensors = load_file(str(path))
        logger.info("embeddings of %s read from cache %s", dataset.path, path)
        has_image = tensors["has_image"].numpy() > 0
        image = np.zeros((len(has_image), backbone.image_dim), dtype=np.float32)
        stored = tensors["image"].numpy()  # rows with an image (older files: every row)
        image[has_image] = stored[has_image] if len(stored) == len(has_image) else stored
        return Embeddings(tensors["text"].numpy(), image, has_image)
    embeddings = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(
        {
            "text": torch.from_numpy(embeddings.text),
            # Only rows with an image: a caption-only set would otherwise store N x D zeros.
            "image": torch.from_numpy(np.ascontiguousarray(embeddings.image[embeddings.has_image])),
            "has_image": torch.from_numpy(embeddings.has_image.astype(np.uint8)),
        },
        str(partial),
    )
    partial.replace(path)  # atomic: an interrupted run never leaves a truncated cache file
    logger.info("embeddings of %s cached at %s", dataset.path, path)
    return embeddings
