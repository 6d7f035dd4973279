"""The one text the classifier reads for a post: its caption, then the text inside its image.

Training and serving both build it here, so a checkpoint trained with image text is scored
with image text read the same way. One joint encoding rather than a second text embedding:
the text encoder sees caption and image text together (a meme's caption often answers its
image text), and the model keeps one text input; docs/signals.md has the measurements.
"""

from __future__ import annotations

SEPARATOR = " | "


def model_text(caption: str, image_text: str) -> str:
    """``caption | image text``; either alone when the other is empty."""
    caption, image_text = caption.strip(), image_text.strip()
    if caption and image_text:
        return f"{caption}{SEPARATOR}{image_text}"
    return caption or image_text
