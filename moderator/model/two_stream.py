"""Two-stream co-attention classifier (LXMERT, Tan & Bansal 2019; ViLBERT's design): a language
stream and a visual stream, each with its own layers, joined by cross-modality layers in which
each stream attends to the other. Built on transformers' LxmertModel.

Visual tokens are the same grid features VisualBERT reads (moderator/model/single_stream.py:
EfficientNet-Lite0's last feature map pooled to `grid` x `grid` cells, row-major), each with its
cell's normalised box (x0, y0, x1, y1 in [0, 1]) as LXMERT's visual position: the grid plays the
part of the detector's regions. LXMERT encodes features and boxes (visual feature encoder), runs
`language_layers` layers over the caption, `visual_layers` over the cells, then `cross_layers`
co-attention layers.

Initialisation (`init`):
- "minilm" (the offline default): word, position and segment embeddings, their LayerNorm and the
  six language layers (`encoder.layer.i.*`, exactly BERT's names and shapes) are copied from the
  packaged all-MiniLM-L6-v2. The visual feature encoder, the visual and cross-modality layers
  and the classifier are new. Up to the cross layers the language stream then computes MiniLM's
  own hidden states (tests/unit/test_model_two_stream.py).
- "path": published LXMERT weights (unc-nlp/lxmert-base-uncased layout) from a local directory
  holding `config.json`, the weights and its tokenizer, never a hub. Their visual feature
  encoder expects detector features (2048-d), so its feature projection is re-initialised for
  the grid's 1280-d.
- "random": tiny configurations for tests.

Pooling (`pooling`): "mean" concatenates the mean of the language stream's tokens and the mean
of the visual stream's cells after the cross layers; "product" (what `moderator train` trains)
adds their element-wise product (ViLBERT's joint representation h_img * h_txt, which lets the
linear classifier read how the two streams agree: with it the generated two-modality task is
learnt, with "mean" it stayed at chance); "cls" is LXMERT's own pooled output (the language
[CLS] through a dense + tanh pooler). Means rather than [CLS] because MiniLM was trained with
mean pooling (its [CLS] summarises nothing), and they give the head both streams directly
instead of relying on new cross layers to route everything into one token from a few thousand
examples.

Rows without an image: their cells are zeroed and masked. The visual stream's attention skips
them, the language stream's cross-attention over an all-masked row spreads evenly over the
zeroed cells (a fixed, learned "no image" context), and the visual mean is 0.

Within ModerationModel it is served exactly as VisualBERT (single_stream_model.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from moderator.model.errors import ModelLoadError
from moderator.model.single_stream import (
    GridSpec,
    load_fitting,
    masked_mean,
    sample_visual_tokens,
)

logger = logging.getLogger(__name__)

KIND = "lxmert"
WEIGHTS_FILE = "lxmert.safetensors"
BOX_DIM = 4
# The published visual feature encoder's projection expects detector features: re-initialised.
FEATURE_PROJECTION = "encoder.visn_fc.visn_fc."


class TwoStreamSpec(GridSpec):
    """LXMERT's shape and inputs; with init "minilm" the language side is MiniLM-L6's."""

    language_layers: int = Field(default=6, ge=1, description="LXMERT's l_layers")
    cross_layers: int = Field(default=2, ge=1, description="LXMERT's x_layers (co-attention)")
    visual_layers: int = Field(default=1, ge=0, description="LXMERT's r_layers (cells only)")
    # `moderator train` trains "product" (--lxmert-pooling); "mean" stays the default here so
    # a config.json without the field reads as it always did.
    pooling: Literal["mean", "product", "cls"] = Field(
        default="mean",
        description="mean: both streams' token means, concatenated; product: those and their "
        "element-wise product (ViLBERT's h_img * h_txt); cls: LXMERT's pooled [CLS]",
    )


def cell_boxes(grid: int) -> torch.Tensor:
    """Normalised boxes (x0, y0, x1, y1) of a grid's cells in row-major order: [grid², 4]."""
    edges = torch.arange(grid + 1, dtype=torch.float32) / grid
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    return torch.stack([edges[cols], edges[rows], edges[cols + 1], edges[rows + 1]], dim=1)


class TwoStreamClassifier(nn.Module):
    """LxmertModel over caption tokens and grid cells + a linear classifier."""

    # Parameters that start untrained (the rest come from MiniLM or published weights): the
    # training loop gives the feature encoder and classifier the head's learning rate and the
    # new transformer layers their own (1e-3 left them at chance on generated data).
    NEW_PREFIXES = ("classifier.", "encoder.encoder.visn_fc.")
    NEW_LAYER_PREFIXES = ("encoder.encoder.x_layers.", "encoder.encoder.r_layers.")

    boxes: torch.Tensor

    def __init__(self, spec: TwoStreamSpec, categories: int) -> None:
        super().__init__()
        from transformers import LxmertConfig, LxmertModel

        self.spec = spec
        config = LxmertConfig(
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            num_attention_heads=spec.heads,
            intermediate_size=spec.intermediate_size,
            l_layers=spec.language_layers,
            x_layers=spec.cross_layers,
            r_layers=spec.visual_layers,
            visual_feat_dim=spec.visual_dim,
            visual_pos_dim=BOX_DIM,
            hidden_dropout_prob=spec.dropout,
            attention_probs_dropout_prob=spec.dropout,
        )
        self.encoder = LxmertModel(config)
        self.register_buffer("boxes", cell_boxes(spec.grid), persistent=False)
        self.dropout = nn.Dropout(spec.dropout)
        pooled = spec.hidden_size * {"mean": 2, "product": 3, "cls": 1}[spec.pooling]
        self.classifier = nn.Linear(pooled, categories)

    def forward(
        self,
        input_ids: torch.Tensor,
        visual: torch.Tensor,
        has_image: torch.Tensor,
    ) -> torch.Tensor:
        """ids [B, L] (0 = padding), grid features [B, V, visual_dim], bool [B] → logits."""
        text_mask = (input_ids != 0).long()
        # Zeroed, not only masked: cross-attention over an all-masked row still reads them.
        visual = visual * has_image[:, None, None].to(visual.dtype)
        boxes = self.boxes.to(visual.dtype).expand(len(visual), -1, -1)
        visual_mask = has_image[:, None].expand(-1, visual.shape[1]).long()
        if self.training and self.spec.visual_drop > 0:
            joined, visual_mask = sample_visual_tokens(
                torch.cat([visual, boxes], dim=-1), visual_mask, self.spec.visual_drop
            )
            visual, boxes = joined[..., : visual.shape[-1]], joined[..., visual.shape[-1] :]
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=text_mask,
            visual_feats=visual,
            visual_pos=boxes,
            visual_attention_mask=visual_mask,
        )
        if self.spec.pooling == "cls":
            pooled = out.pooled_output
        else:
            language = masked_mean(out.language_output, text_mask)
            vision = masked_mean(out.vision_output, visual_mask)
            parts = [language, vision]
            if self.spec.pooling == "product":
                parts.append(language * vision)
            pooled = torch.cat(parts, dim=1)
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits


def copy_minilm(classifier: TwoStreamClassifier, minilm: nn.Module) -> list[str]:
    """Copy a BERT-layout model's embeddings, language layers and pooler into the classifier's
    LxmertModel (same names); returns the parameters left as initialised. Shapes must match."""
    own = classifier.encoder.state_dict()
    source = {k: v for k, v in minilm.state_dict().items() if k in own}
    layers = {k.split(".")[2] for k in source if k.startswith("encoder.layer.")}
    if len(layers) != classifier.spec.language_layers:
        raise ModelLoadError(
            f"MiniLM has {len(layers)} layers, the spec {classifier.spec.language_layers}"
        )
    return load_fitting(classifier.encoder, source, "MiniLM weights do not fit the spec")


def load_published(classifier: TwoStreamClassifier, path: Path) -> None:
    """Published LXMERT weights from a local directory (feature projection re-initialised)."""
    from transformers import LxmertModel

    try:
        published = LxmertModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load LXMERT weights from {path}: {e}") from e
    state = {
        k: v for k, v in published.state_dict().items() if not k.startswith(FEATURE_PROJECTION)
    }
    load_fitting(
        classifier.encoder,
        state,
        f"LXMERT weights in {path} do not fit the spec (hidden_size, heads, intermediate_size, "
        "vocab_size and the three layer counts must be the published model's)",
    )


def published_shape(path: Path) -> dict[str, int]:
    """The transformer shape of published LXMERT weights, from their local config.json."""
    from transformers import LxmertConfig

    try:
        config = LxmertConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read an LXMERT config.json in {path}: {e}") from e
    return {
        "hidden_size": config.hidden_size,
        "heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "language_layers": config.l_layers,
        "cross_layers": config.x_layers,
        "visual_layers": config.r_layers,
    }


def build_classifier(
    spec: TwoStreamSpec, categories: int, minilm: nn.Module | None = None
) -> TwoStreamClassifier:
    """A classifier initialised as spec.init says (minilm: pass the BERT module or it loads)."""
    classifier = TwoStreamClassifier(spec, categories)
    if spec.init == "minilm":
        if minilm is None:
            from moderator.model.text_encoder import MiniLMTextEncoder

            minilm = MiniLMTextEncoder().model
        fresh = copy_minilm(classifier, minilm)
        logger.info("LXMERT initialised from MiniLM; %d new tensors", len(fresh))
    elif spec.init == "path" and spec.init_path is not None:
        load_published(classifier, Path(spec.init_path))
    return classifier
