"""Single-stream vision-language classifier (VisualBERT): one transformer over
[caption tokens ; visual tokens], as in Li et al. 2019, built on transformers' VisualBertModel.

Visual tokens are the image encoder's grid features: EfficientNet-Lite0's last feature map
(7x7x1280 at 224 px), average-pooled to `grid` x `grid` cells. VisualBertModel projects them to
the hidden size and adds a visual segment embedding; VisualBERT's own visual positions are all
zero without detector boxes, so each cell gets a learned position vector here, added before the
projection (the projection is linear, so this is a position embedding in the hidden space).

Initialisation (`init`):
- "minilm" (the offline default): word, position and segment embeddings, the LayerNorm and all
  six encoder layers are copied from the packaged all-MiniLM-L6-v2 (the same BERT layout);
  visual segment and position embeddings start as copies of the text ones (VisualBERT's
  "special visual initialisation"); the projection, cell positions and classifier are new.
  On text-only input the model then computes exactly MiniLM's hidden states
  (tests/unit/test_model_single_stream.py).
- "path": published VisualBERT weights (e.g. uclanlp/visualbert-*) from a local directory
  holding `config.json`, the weights and its tokenizer, never a hub. Their projection expects
  detector features (2048-d), so it is re-initialised for the grid's 1280-d.
- "random": tiny configurations for tests.

Within ModerationModel: embed_images returns the grid features flattened, [N, grid²·1280]; they
are what the worker caches per image. embed_texts returns the caption's token ids as float32
[N, max_text_tokens], 0-padded: tokenising is cheap, but the worker's cache and the replica's
batch layout stay as they are. score() runs the transformer on both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from moderator.model.backbone_base import ImagePreprocessing
from moderator.model.efficientnet_lite import FEATURE_DIM, load_efficientnet_lite0
from moderator.model.errors import ModelLoadError
from moderator.model.inference import pixels_to_device

logger = logging.getLogger(__name__)

KIND = "visualbert"
WEIGHTS_FILE = "visualbert.safetensors"
Init = Literal["minilm", "path", "random"]


class GridSpec(BaseModel):
    """What VisualBERT and LXMERT share: a BERT-shaped text side (MiniLM-L6's with init
    "minilm") over caption tokens, and grid cells of Lite0's feature map as visual tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    init: Init = "minilm"
    init_path: str | None = Field(
        default=None, description="init 'path': local directory of published weights"
    )
    hidden_size: int = Field(default=384, gt=0)
    heads: int = Field(default=12, ge=1)
    intermediate_size: int = Field(default=1536, gt=0)
    vocab_size: int = Field(default=30522, gt=0)
    max_text_tokens: int = Field(default=48, ge=4, le=512, description="[CLS] … [SEP] included")
    grid: int = Field(default=7, ge=1, le=7, description="visual tokens = grid²")
    visual_dim: int = Field(default=FEATURE_DIM, gt=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    visual_drop: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Pixel-BERT's random pixel sampling: share of visual tokens dropped in each "
        "training step (none at inference)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of heads")
        if (self.init == "path") != (self.init_path is not None):
            raise ValueError("init_path is required with init 'path', and only then")
        return self

    @property
    def visual_tokens(self) -> int:
        return self.grid * self.grid


class SingleStreamSpec(GridSpec):
    """VisualBERT's shape and inputs; with init "minilm" the shape is MiniLM-L6's."""

    layers: int = Field(default=6, ge=1)
    pooling: Literal["mean", "cls"] = Field(
        default="mean", description="mean of every token the row has (MiniLM was trained so)"
    )


class SingleStreamClassifier(nn.Module):
    """VisualBertModel + cell positions + a linear classifier over the pooled tokens."""

    # Parameters that start untrained (the rest come from MiniLM or published weights): the
    # training loop gives them the head's learning rate.
    NEW_PREFIXES = (
        "cell_positions",
        "classifier.",
        "encoder.embeddings.visual_projection.",
    )
    NEW_LAYER_PREFIXES: tuple[str, ...] = ()  # no new transformer layers (two_stream.py has)

    def __init__(self, spec: SingleStreamSpec, categories: int) -> None:
        super().__init__()
        from transformers import VisualBertConfig, VisualBertModel

        self.spec = spec
        config = VisualBertConfig(
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            intermediate_size=spec.intermediate_size,
            visual_embedding_dim=spec.visual_dim,
            hidden_dropout_prob=spec.dropout,
            attention_probs_dropout_prob=spec.dropout,
            special_visual_initialize=True,
        )
        self.encoder = VisualBertModel(config, add_pooling_layer=False)
        self.cell_positions = nn.Parameter(torch.zeros(spec.visual_tokens, spec.visual_dim))
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.hidden_size, categories)

    def forward(
        self,
        input_ids: torch.Tensor,
        visual: torch.Tensor,
        has_image: torch.Tensor,
    ) -> torch.Tensor:
        """ids [B, L] (0 = padding), grid features [B, V, visual_dim], bool [B] → logits."""
        text_mask = (input_ids != 0).long()
        visual = visual + self.cell_positions
        visual_mask = has_image[:, None].expand(-1, visual.shape[1]).long()
        if self.training and self.spec.visual_drop > 0:
            visual, visual_mask = sample_visual_tokens(visual, visual_mask, self.spec.visual_drop)
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=text_mask,
            visual_embeds=visual,
            visual_attention_mask=visual_mask,
        ).last_hidden_state
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = masked_mean(hidden, torch.cat([text_mask, visual_mask], dim=1))
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens a row has ([B, T, H], [B, T] → [B, H]); 0 for a row with none."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def load_fitting(encoder: nn.Module, state: dict[str, torch.Tensor], what: str) -> list[str]:
    """Load `state` into `encoder` (not strictly: the rest keeps its initialisation) after
    checking that every key exists there with the same shape, else ModelLoadError starting
    with `what`; returns the encoder's parameters left as initialised."""
    own = encoder.state_dict()
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise ModelLoadError(f"{what}: {wrong[:4]}")
    encoder.load_state_dict(state, strict=False)
    return sorted(k for k in own if k not in state)


def sample_visual_tokens(
    visual: torch.Tensor, mask: torch.Tensor, drop: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-BERT's sampling: a random (1 - drop) share of each row's visual tokens, in a new
    random subset per call. Cell positions were added before, so each kept token keeps its own."""
    batch, tokens, dim = visual.shape
    keep = max(1, round(tokens * (1.0 - drop)))
    order = torch.rand(batch, tokens, device=visual.device).argsort(dim=1)[:, :keep]
    kept = visual.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    return kept, mask.gather(1, order)


def copy_minilm(classifier: SingleStreamClassifier, minilm: nn.Module) -> list[str]:
    """Copy a BERT-layout model's embeddings and encoder layers into the classifier's encoder;
    returns the encoder parameters left as initialised (the visual ones). Shapes must match."""
    own = classifier.encoder.state_dict()
    source = {k: v for k, v in minilm.state_dict().items() if k in own}
    fresh = load_fitting(classifier.encoder, source, "MiniLM weights do not fit the spec")
    embeddings = classifier.encoder.embeddings
    with torch.no_grad():
        embeddings.visual_token_type_embeddings.weight.copy_(
            embeddings.token_type_embeddings.weight
        )
        embeddings.visual_position_embeddings.weight.copy_(embeddings.position_embeddings.weight)
    return fresh


def load_published(classifier: SingleStreamClassifier, path: Path) -> None:
    """Published VisualBERT weights from a local directory (projection re-initialised)."""
    from transformers import VisualBertModel

    try:
        published = VisualBertModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load VisualBERT weights from {path}: {e}") from e
    state = {
        k: v
        for k, v in published.state_dict().items()
        if not k.startswith("embeddings.visual_projection") and not k.startswith("pooler.")
    }
    load_fitting(
        classifier.encoder,
        state,
        f"VisualBERT weights in {path} do not fit the spec (hidden_size, layers, heads, "
        "intermediate_size, vocab_size must be the published model's)",
    )


def published_shape(path: Path) -> dict[str, int]:
    """The transformer shape of published VisualBERT weights, from their local config.json."""
    from transformers import VisualBertConfig

    try:
        config = VisualBertConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read a VisualBERT config.json in {path}: {e}") from e
    return {
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
    }


class GridImageEncoder:
    """EfficientNet-Lite0's last feature map, pooled to grid x grid cells: [N, grid²·1280]."""

    def __init__(self, grid: int, net: nn.Module | None = None) -> None:
        self.grid = grid
        self.net = net if net is not None else load_efficientnet_lite0()
        self.device = torch.device("cpu")

    @property
    def dim(self) -> int:
        return self.grid * self.grid * FEATURE_DIM

    def to(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.net.to(self.device)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, S, S, 3] → float32 [N, grid²·1280] (cells in row-major order), with
        float16 values."""
        with torch.inference_mode():
            x = (pixels_to_device(pixels, self.device).float() / 255.0 - 0.5) / 0.5
            cells = F.adaptive_avg_pool2d(self.net.feature_map(x), self.grid)  # type: ignore[operator]
            flat = cells.permute(0, 2, 3, 1).reshape(len(pixels), -1)
            # Rounded to float16: what training caches on disk and the feature cache stores,
            # so fresh and cached features are the same numbers.
            return flat.half().float().cpu().numpy()


def load_tokenizer(spec: GridSpec) -> Any:
    """The tokenizer of the initialisation: MiniLM's packaged one, or the published model's."""
    from transformers import AutoTokenizer

    from moderator.model.text_encoder import default_minilm_path

    path = Path(spec.init_path) if spec.init == "path" and spec.init_path else default_minilm_path()
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the tokenizer from {path}: {e}") from e


def token_ids(tokenizer: Any, texts: list[str], length: int) -> np.ndarray:
    """Texts → float32 [N, length] token ids, [CLS] … [SEP], 0-padded, truncated to length."""
    if not texts:
        return np.zeros((0, length), dtype=np.float32)
    batch = tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )
    ids = np.asarray(batch["input_ids"])
    if tokenizer.pad_token_id != 0:  # the model reads 0 as padding
        ids = np.where(ids == tokenizer.pad_token_id, 0, ids)
    return ids.astype(np.float32)


def build_classifier(
    spec: SingleStreamSpec, categories: int, minilm: nn.Module | None = None
) -> SingleStreamClassifier:
    """A classifier initialised as spec.init says (minilm: pass the BERT module or it loads)."""
    classifier = SingleStreamClassifier(spec, categories)
    if spec.init == "minilm":
        if minilm is None:
            from moderator.model.text_encoder import MiniLMTextEncoder

            minilm = MiniLMTextEncoder().model
        fresh = copy_minilm(classifier, minilm)
        logger.info("VisualBERT initialised from MiniLM; new: %s", ", ".join(fresh))
    elif spec.init == "path" and spec.init_path is not None:
        load_published(classifier, Path(spec.init_path))
    return classifier


def offline_grid_preprocessing(image_size: int = 224) -> ImagePreprocessing:
    """Lite0's input: 224 px by default, (x - 0.5) / 0.5."""
    return ImagePreprocessing(image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3)
