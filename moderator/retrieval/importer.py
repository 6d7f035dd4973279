"""Building a semantic bank: known-bad posts embedded with the serving model.

Sources are JSONL files of posts and/or image files (folders are walked). A JSONL row is
``{"id": ..., "img": "path/to/image.jpg", "text": "caption", "image_text": "..."}``: `img`
(or `image`) relative to the JSONL file, `text` (or `caption`) the post's caption, `image_text`
the text inside the image, when known; each part optional, but not all. A row's text side is
what the worker would send the model: the normalised caption, joined to the image text for a
model trained on both (moderator.text.model_text). Image files are image-only entries. Images
are resized as the worker's decoder does (moderator.ingest.image). Any unreadable row or image
stops the import with its file and line: a bank silently missing entries would miss matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import Image

from moderator.model.base import ModerationModel
from moderator.model.object_tags import object_tagger
from moderator.retrieval.bank import SemanticBank, SemanticBankError
from moderator.retrieval.joint import entry_vectors
from moderator.text import model_text, normalise_text

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
_BATCH = 32


@dataclass(frozen=True, slots=True)
class BankItem:
    id: str
    image: Path | None
    caption: str = ""
    image_text: str = ""


def read_items(sources: Iterable[Path]) -> list[BankItem]:
    """Every entry the sources describe, in order; raises SemanticBankError naming file:line."""
    items: list[BankItem] = []
    for file in _files(sources):
        suffix = file.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            items.append(BankItem(id=file.name, image=file))
        elif suffix == ".jsonl":
            items.extend(_jsonl_items(file))
        else:
            raise SemanticBankError(
                f"{file}: not a .jsonl file or an image ({sorted(IMAGE_SUFFIXES)})"
            )
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise SemanticBankError(f"entry id {duplicate!r} appears twice: ids name bank entries")
    if not items:
        raise SemanticBankError("no entries: give JSONL files or images")
    return items


def _files(sources: Iterable[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            yield from sorted(p for p in source.rglob("*") if p.is_file())
        elif source.is_file():
            yield source
        else:
            raise SemanticBankError(f"{source}: no such file or folder")


def _jsonl_items(file: Path) -> Iterator[BankItem]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SemanticBankError(f"{file}: cannot read it ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            row: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SemanticBankError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise SemanticBankError(f"{where}: a row must be a JSON object")
        image = row.get("img", row.get("image"))
        caption = row.get("text", row.get("caption", ""))
        image_text = row.get("image_text", "")
        for name, value in (("img", image), ("text", caption), ("image_text", image_text)):
            if value is not None and not isinstance(value, str):
                raise SemanticBankError(f"{where}: {name} must be a string")
        if not image and not (caption or "").strip() and not (image_text or "").strip():
            raise SemanticBankError(f"{where}: the row has no image and no text")
        path = None
        if image:
            path = file.parent / image
            if not path.is_file():
                raise SemanticBankError(f"{where}: image {path} does not exist")
        yield BankItem(
            id=str(row.get("id", f"{file.name}:{number}")),
            image=path,
            caption=caption or "",
            image_text=image_text or "",
        )


def model_pixels(path: Path, size: int) -> np.ndarray:
    """uint8 [size, size, 3] as the worker's decoder makes them (draft, RGB, bilinear)."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # PIL reports bad data through many exception types
        raise SemanticBankError(f"{path}: cannot decode the image ({exc})") from exc


def item_text(item: BankItem, reads_image_text: bool) -> str:
    """The text the model reads for this entry, as the worker builds it."""
    caption = normalise_text(item.caption).text
    if not reads_image_text:
        return caption
    return model_text(caption, normalise_text(item.image_text).text)


def embed_items(
    model: ModerationModel, items: list[BankItem]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image embeddings, has_image, text embeddings, has_text for every item (batched)."""
    count = len(items)
    image = np.zeros((count, model.image_embedding_dim), dtype=np.float32)
    text = np.zeros((count, model.text_embedding_dim), dtype=np.float32)
    has_image = np.array([item.image is not None for item in items])
    texts = [item_text(item, model.reads_image_text) for item in items]
    has_text = np.array([bool(t) for t in texts])
    with_image = np.flatnonzero(has_image)
    for start in range(0, len(with_image), _BATCH):
        rows = with_image[start : start + _BATCH]
        pixels = np.stack([model_pixels(items[i].image, model.image_size) for i in rows])
        image[rows] = model.embed_images(pixels)
    tagger = object_tagger(model)
    if tagger is not None:  # as the replica tags them (moderator.serving.scoring)
        texts = tagger.tag_texts(texts, image, has_image)
    with_text = np.flatnonzero(has_text)
    for start in range(0, len(with_text), _BATCH):
        rows = with_text[start : start + _BATCH]
        text[rows] = model.embed_texts([texts[i] for i in rows])
    return image, has_image, text, has_text


def build_bank(name: str, model: ModerationModel, items: list[BankItem]) -> SemanticBank:
    image, has_image, text, has_text = embed_items(model, items)
    return SemanticBank(
        name=name,
        model_version=model.model_version,
        image_dim=model.image_embedding_dim,
        text_dim=model.text_embedding_dim,
        vectors=entry_vectors(image, has_image, text, has_text),
        ids=[item.id for item in items],
    )
