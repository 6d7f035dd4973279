"""Training rows that point at videos or frame folders (#14): their frames, as the worker samples
them, embedded with the frozen image encoder and cached on disk per frame.

A row's frames come in the worker's order (moderator/ingest/media.py): its image (a still is
one frame; an animated GIF/WebP is sampled), then its frame folder (image files in name order,
sampled like the frames of a video), then its video. Sampling is the worker's FrameSampler
with `limits.media`'s defaults (K frames per item, half uniform and half the strongest scene
changes, at most max_frames_per_post per row, each item keeping one), and frames become model
pixels as the worker converts them. Unlike the worker, no decode-time budget applies: a
training run must read the same frames every time.

Each frame's embedding is cached under the cache folder by the digest the worker keys it by
(docs/video.md, "Feature cache keys"): a still image's file sha256, the sha256 of the model
pixels for a sampled frame; captions by the sha256 of their text. So a frame shared by two
videos, or a re-run with more rows, encodes only what is new.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import Progress

from moderator.errors import InvalidPostError
from moderator.ingest.frames import (
    FrameSampler,
    grey_thumb,
    is_animation_candidate,
    model_pixels,
    sample_animation,
)
from moderator.ingest.video import sample_video
from moderator.media_settings import MediaLimits
from moderator.model.backbone_base import BackboneEncoder
from moderator.training.dataset import Dataset, Example
from moderator.training.embedding_cache import (
    IMAGE_BATCH,
    TEXT_BATCH,
    TRAINING_DECODE_LIMITS,
    backbone_fingerprint,
)
from moderator.training.errors import TrainingDataError

logger = logging.getLogger(__name__)

FRAME_FILE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})


@dataclass(frozen=True)
class FrameEmbeddings:
    """Every post as rows of a flat table, one row per frame (a post without an image: one row
    without an image), and `index` [N, K]: each post's rows, padded with -1. A post's rows are
    what the worker sends the model for it: each frame with the post's caption."""

    text: np.ndarray  # float32 [R, Dt]
    image: np.ndarray  # float32 [R, Di], zeros where has_image is False
    has_image: np.ndarray  # bool [R]
    index: np.ndarray  # int64 [N, K]

    def subset(self, indices: np.ndarray) -> FrameEmbeddings:
        """The posts `indices`; the row table is shared, not copied."""
        return FrameEmbeddings(self.text, self.image, self.has_image, self.index[indices])

    @property
    def frames(self) -> np.ndarray:
        """Frames with an image per post [N]."""
        rows = self.index >= 0
        counts: np.ndarray = (rows & self.has_image[np.where(rows, self.index, 0)]).sum(axis=1)
        return counts


@dataclass(frozen=True)
class PostFrame:
    digest: str  # the worker's feature-cache key of this frame
    pixels: np.ndarray  # model pixels, size x size x 3


class FeatureStore:
    """Embeddings on disk, one .npy per key (no pickle), under one folder per backbone; None
    folder: nothing is kept."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, kind: str, key: str) -> Path | None:
        return None if self.folder is None else self.folder / kind / key[:2] / f"{key}.npy"

    def get(self, kind: str, key: str) -> np.ndarray | None:
        path = self._path(kind, key)
        if path is None or not path.is_file():
            return None
        try:
            vector: np.ndarray = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed
        return vector

    def put(self, kind: str, key: str, vector: np.ndarray) -> None:
        path = self._path(kind, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
        np.save(partial_path, np.asarray(vector, dtype=np.float32), allow_pickle=False)
        partial_path.replace(path)  # atomic: readers never see half a file


def frame_store(backbone: BackboneEncoder, cache_dir: Path | None) -> FeatureStore:
    if cache_dir is None:
        return FeatureStore(None)
    return FeatureStore(cache_dir / "frames" / backbone_fingerprint(backbone)[:16])


def post_frames(
    dataset: Dataset, example: Example, size: int, media: MediaLimits | None = None
) -> list[PostFrame]:
    """The frames the worker would score for this row (see the module docstring)."""
    media = media or MediaLimits()
    where = f"{dataset.path}:{example.line}"
    items = [p for p in (example.image, example.frames, example.video) if p is not None]
    frames: list[PostFrame] = []

    def room(done: int) -> int:
        """Frames this item may take: each later item keeps at least one (as load_media)."""
        left = media.max_frames_per_post - len(frames) - (len(items) - done - 1)
        per_item = media.frames_per_item if media.sample_frames else 1
        return max(1, min(per_item, left))

    done = 0
    if example.image is not None:
        frames += _image_frames(example.image, size, media, room(done), where)
        done += 1
    if example.frames is not None:
        frames += _folder_frames(example.frames, size, media, room(done), where)
        done += 1
    if example.video is not None:
        frames += _video_frames(example.video, size, media, room(done), where)
    return frames


def _read(path: Path, what: str, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TrainingDataError(f"{where}: cannot read {what} {path}: {e}") from e


def _image_frames(path: Path, size: int, media: MediaLimits, k: int, where: str) -> list[PostFrame]:
    from moderator.ingest.image import decode_image

    data = _read(path, "image", where)
    try:
        pixels = decode_image(data, TRAINING_DECODE_LIMITS, size)
    except InvalidPostError as e:
        raise TrainingDataError(f"{where}: cannot use image {path}: {e}") from e
    frames = [PostFrame(hashlib.sha256(data).hexdigest(), pixels)]
    if media.sample_frames and k > 1 and is_animation_candidate(data):
        try:
            sampled = sample_animation(data, media, size, k, math.inf)
        except Exception as e:  # Pillow on a broken animation: as the worker, keep frame 0
            logger.warning("%s: animation %s unreadable past frame 0: %s", where, path, e)
            return frames
        frames += [_sampled(pixels) for position, pixels in sampled.frames if position]
    return frames


def _folder_frames(
    folder: Path, size: int, media: MediaLimits, k: int, where: str
) -> list[PostFrame]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_FILE_SUFFIXES
    )
    if not files:
        raise TrainingDataError(f"{where}: frame folder {folder} holds no image files")
    sampler = FrameSampler(len(files), k, media.scene_change)
    for number, path in enumerate(files):
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise TrainingDataError(f"{where}: cannot use frame {path}: {e}") from e
        sampler.offer(number, grey_thumb(rgb), partial(model_pixels, rgb, size))
    return [_sampled(pixels) for _, pixels in sampler.frames()]


def _video_frames(path: Path, size: int, media: MediaLimits, k: int, where: str) -> list[PostFrame]:
    data = _read(path, "video", where)
    try:
        sampled = sample_video(data, media, size, k, math.inf)
    except InvalidPostError as e:
        raise TrainingDataError(f"{where}: cannot use video {path}: {e}") from e
    except Exception as e:  # FFmpeg on a broken file: name the row, as for a bad image
        raise TrainingDataError(f"{where}: cannot use video {path}: {type(e).__name__}") from e
    for code, detail in sampled.problems.items():
        logger.warning("%s: video %s: %s (%s)", where, path, code.value, detail)
    return [_sampled(pixels) for _, pixels in sampled.frames]


def _sampled(pixels: np.ndarray) -> PostFrame:
    """A sampled frame, keyed as the worker keys it: the sha256 of its model pixels."""
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    return PostFrame(digest, pixels)


def frame_embeddings(
    backbone: BackboneEncoder,
    dataset: Dataset,
    cache_dir: Path | None,
    progress: Progress | None = None,
    media: MediaLimits | None = None,
) -> FrameEmbeddings:
    """Sample every row's frames, embed what the cache lacks in batches, build the row table."""
    store = frame_store(backbone, cache_dir)
    text = _caption_embeddings(backbone, dataset, store, progress)
    size = backbone.preprocessing.image_size
    vectors: dict[str, np.ndarray] = {}
    digests: list[list[str]] = []
    pending: dict[str, np.ndarray] = {}
    task = progress.add_task("frames", total=len(dataset.examples)) if progress else None
    for example in dataset.examples:
        frames = post_frames(dataset, example, size, media)
        digests.append([f.digest for f in frames])
        for frame in frames:
            if frame.digest in vectors or frame.digest in pending:
                continue
            cached = store.get("image", frame.digest)
            if cached is not None and cached.shape == (backbone.image_dim,):
                vectors[frame.digest] = cached
            else:
                pending[frame.digest] = frame.pixels
        if len(pending) >= IMAGE_BATCH:
            _encode(backbone, pending, vectors, store)
        if progress and task is not None:
            progress.advance(task)
    _encode(backbone, pending, vectors, store)
    return _row_table(text, digests, vectors, backbone.image_dim)


def _encode(
    backbone: BackboneEncoder,
    pending: dict[str, np.ndarray],
    vectors: dict[str, np.ndarray],
    store: FeatureStore,
) -> None:
    keys = list(pending)
    for start in range(0, len(keys), IMAGE_BATCH):
        chunk = keys[start : start + IMAGE_BATCH]
        encoded = backbone.encode_images(np.stack([pending[k] for k in chunk]))
        for key, vector in zip(chunk, encoded, strict=True):
            vectors[key] = vector
            store.put("image", key, vector)
    pending.clear()


def _caption_embeddings(
    backbone: BackboneEncoder, dataset: Dataset, store: FeatureStore, progress: Progress | None
) -> np.ndarray:
    texts = [e.text for e in dataset.examples]
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
    out = np.zeros((len(texts), backbone.text_dim), dtype=np.float32)
    missing: list[int] = []
    for row, key in enumerate(keys):
        cached = store.get("text", key)
        if cached is not None and cached.shape == (backbone.text_dim,):
            out[row] = cached
        else:
            missing.append(row)
    task = progress.add_task("captions", total=len(missing)) if progress and missing else None
    missing.sort(key=lambda i: len(texts[i]))  # batches of similar length pad little
    for start in range(0, len(missing), TEXT_BATCH):
        rows = missing[start : start + TEXT_BATCH]
        out[rows] = backbone.encode_texts([texts[i] for i in rows])
        for i in rows:
            store.put("text", keys[i], out[i])
        if progress and task is not None:
            progress.advance(task, len(rows))
    return out


def _row_table(
    text: np.ndarray, digests: list[list[str]], vectors: dict[str, np.ndarray], image_dim: int
) -> FrameEmbeddings:
    width = max(1, max((len(d) for d in digests), default=1))
    index = np.full((len(digests), width), -1, dtype=np.int64)
    rows: list[tuple[int, str | None]] = []  # (post, frame digest or None)
    for post, post_digests in enumerate(digests):
        for slot, digest in enumerate(post_digests or [None]):
            index[post, slot] = len(rows)
            rows.append((post, digest))
    image = np.zeros((len(rows), image_dim), dtype=np.float32)
    has_image = np.zeros(len(rows), dtype=bool)
    for row, (_, digest) in enumerate(rows):
        if digest is not None:
            image[row], has_image[row] = vectors[digest], True
    posts = np.array([post for post, _ in rows], dtype=np.int64)
    return FrameEmbeddings(text[posts], image, has_image, index)


def iter_frame_rows(embeddings: FrameEmbeddings) -> Iterator[tuple[int, np.ndarray]]:
    """(post, its row numbers) for every post: what the worker pools back into one post."""
    for post, slots in enumerate(embeddings.index):
        yield post, slots[slots >= 0]
