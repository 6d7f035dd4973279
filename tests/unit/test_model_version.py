"""Model versions of checkpoints already written must not move: decisions, feature-cache keys and
the model card name them. The formula lives in checkpoint_files.checkpoint_version."""

from __future__ import annotations

import hashlib
import json

from moderator.model import load_model, starter_checkpoint_dir
from moderator.model.checkpoint_files import checkpoint_version, read_config_json
from moderator.model.starter_config import read_starter_spec

# The packaged starter's version (see moderator/model/starter/MODEL_CARD.md). If this test fails,
# the starter's caption head config or weights, or the way they are hashed, changed: that is a
# new model version, so bump it on purpose (and the model card) rather than editing this line.
STARTER_VERSION = "starter-0.3-b1c6ddb3656f"


def test_the_packaged_starter_keeps_its_model_version() -> None:
    directory = starter_checkpoint_dir()
    spec = read_starter_spec(directory, read_config_json(directory))
    assert spec.model_version == STARTER_VERSION


def test_the_loaded_starter_serves_that_version() -> None:
    assert load_model(None).model_version == STARTER_VERSION


def test_checkpoint_version_is_the_name_and_12_hex_of_config_and_weights() -> None:
    directory = starter_checkpoint_dir()
    spec = read_starter_spec(directory, read_config_json(directory))
    head, head_dir = spec.caption_head, spec.caption_head_dir
    assert head is not None and head_dir is not None and head.backbone_weights is None
    canonical = head.model_dump(mode="json")
    # Fields added later (the ITM head's, the frame attention's, the kNN vote's examples, object
    # tags) count only when set: older versions stay.
    assert canonical.pop("itm") is None and canonical.pop("itm_weights") is None
    assert canonical.pop("frame_attention") is None
    assert canonical.pop("frame_attention_weights") is None
    assert canonical.pop("neighbours") is None and canonical.pop("neighbours_weights") is None
    assert canonical.pop("object_tags") is None
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode())
    digest.update((head_dir / head.head_weights).read_bytes())
    assert checkpoint_version("any-name", head_dir, head) == f"any-name-{digest.hexdigest()[:12]}"
