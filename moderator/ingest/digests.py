"""Content digests computed in ingest: the keys of the Redis caches.

Images are keyed by the sha256 of their bytes (moderator.signals.hashes, while decoding); texts
by the sha256 of the text the model reads (the normalised caption, joined to the image text
for models trained on both), so a cached embedding is exactly what the encoder would compute.
"""

from __future__ import annotations

import hashlib

from moderator.text import normalise_text


def normalise_caption(caption: str) -> str:
    """The text the model encodes and the cache keys (`moderator.text.normalise_text`:
    hidden characters removed, NFKC, look-alikes folded, whitespace collapsed), so captions
    a reader cannot tell apart share an embedding."""
    return normalise_text(caption).text


def text_digest(text: str) -> str:
    """sha256 hex of a model text input's UTF-8: its content hash in text cache keys."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
