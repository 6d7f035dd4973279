"""The normalised caption, computed once in ingest: what the model, term lists and caches read.

The image's digests are computed while it is decoded (moderator.signals.hashes). The text
embedding's key is the sha256 of the text the model reads, which for a model trained on image
text includes what OCR read later, so the text embedding signal computes it
(moderator.signals.embeddings.text_digest).
"""

from __future__ import annotations

from moderator.text import normalise_text


def normalise_caption(caption: str) -> str:
    """The text the model encodes and the cache keys (`moderator.text.normalise_text`:
    hidden characters removed, NFKC, look-alikes folded, whitespace collapsed), so captions
    a reader cannot tell apart share an embedding."""
    return normalise_text(caption).text
