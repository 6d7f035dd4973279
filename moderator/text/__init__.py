"""Caption text normalisation shared by the model's input, the cache keys and term lists."""

from moderator.text.joint import model_text
from moderator.text.lookalikes import fold_lookalikes
from moderator.text.normalise import CAPTION_CHAR_PROBLEMS, NormalisedText, normalise_text

__all__ = [
    "CAPTION_CHAR_PROBLEMS",
    "NormalisedText",
    "fold_lookalikes",
    "model_text",
    "normalise_text",
]
