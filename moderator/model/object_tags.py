"""Object tags (OSCAR / UNITER): the image's top-k ImageNet class names joined to its text.

A fusion checkpoint trained with `--object-tags K` reads "caption\\ntags: a, b, c" instead of
the caption: the names of the K ImageNet classes its image encoder ranks highest for the post's
image. The classes come from the image embedding itself (EfficientNet-Lite0's classifier over
its pooled features), so a post whose image embedding the worker's cache holds is tagged without
its pixels. Rows without an image, or without text, are left as they are: a post with neither
caption nor image text is scored from its image alone, as without tags.

The class names (imagenet_classes.json) are torchvision's ImageNet-1k label list (BSD-3-Clause).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import nn

TAGS_SEPARATOR = "\ntags: "
MAX_TAGS = 20


class NoImageClassifierError(ValueError):
    """The backbone's image encoder has no ImageNet classifier to take tags from."""


@cache
def imagenet_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in the classifier's output order."""
    text = resources.files("moderator.model").joinpath("imagenet_classes.json").read_text()
    names = tuple(json.loads(text))
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.json holds {len(names)} names, expected 1000")
    return names


def with_tags(text: str, tags: str) -> str:
    """The text the encoder reads: text, then tags; the text alone when either is empty."""
    return f"{text}{TAGS_SEPARATOR}{tags}" if text and tags else text


@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class ImageTagger:
    """Top-k ImageNet class names of image embeddings, always in fp32.

    The classifier's weights are copied when the model loads, before any reduced precision or
    int8 conversion of the encoders, so serving tags what training tagged.
    """

    weight: torch.Tensor  # [1000, image_dim] float32
    bias: torch.Tensor  # [1000] float32
    k: int

    @classmethod
    def of(cls, backbone: Any, k: int) -> ImageTagger:
        """The tagger of a backbone whose image encoder classifies ImageNet (the offline one)."""
        head: nn.Linear | None = getattr(backbone, "imagenet_classifier", None)
        if head is None:
            raise NoImageClassifierError(
                f"object tags need an image encoder with an ImageNet classifier (the offline "
                f"backbone's EfficientNet-Lite0); the {backbone.spec.type} backbone has none"
            )
        if not 1 <= k <= MAX_TAGS:
            raise ValueError(f"object tags: k must be 1..{MAX_TAGS}, got {k}")
        weight = head.weight.detach().float().clone()
        bias = head.bias.detach().float().clone()
        return cls(weight, bias, k)

    def to(self, device: torch.device) -> ImageTagger:
        return ImageTagger(self.weight.to(device), self.bias.to(device), self.k)

    def tags(self, image_embeddings: np.ndarray) -> list[str]:
        """Image embeddings [N, Di] → N tag strings ("a, b, c"), highest-ranked class first."""
        if not len(image_embeddings):
            return []
        names = imagenet_names()
        with torch.inference_mode():
            image = torch.as_tensor(np.asarray(image_embeddings, dtype=np.float32))
            logits = torch.nn.functional.linear(
                image.to(self.weight.device), self.weight, self.bias
            )
            top = logits.topk(self.k, dim=1).indices.cpu().numpy()
        return [", ".join(names[i] for i in row) for row in top]

    def tag_texts(
        self, texts: Sequence[str], image_embeddings: np.ndarray, has_image: np.ndarray
    ) -> list[str]:
        """Each row's text with its image's tags; rows without text or image unchanged."""
        out = list(texts)
        rows = [i for i, text in enumerate(texts) if text and has_image[i]]
        for i, tags in zip(rows, self.tags(image_embeddings[rows]), strict=True):
            out[i] = with_tags(out[i], tags)
        return out


def object_tagger(model: object) -> ImageTagger | None:
    """The model's tagger when it was trained with object tags, else None."""
    return getattr(model, "tagger", None)
