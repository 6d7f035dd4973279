"""A checkpoint deployed as its own Classifier app on the session's Ray instance, for the tests
that compare what the replica serves with the model in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray import serve

from moderator.serving.messages import ModelInfo
from moderator.serving.runner import deploy_classifier
from moderator.serving_settings import ServingSettings


@contextmanager
def served_checkpoint(
    ray_serving: ServingSettings, checkpoint: Path, app_name: str
) -> Iterator[tuple[Any, ModelInfo]]:
    """(the app's handle, the replica's ModelInfo); the app is deleted afterwards."""
    classifier = ray_serving.classifier.model_copy(update={"checkpoint": checkpoint})
    serving = ray_serving.model_copy(update={"app_name": app_name, "classifier": classifier})
    handle = deploy_classifier(serving)
    try:
        info: ModelInfo = handle.model_info.remote().result(timeout_s=120)
        yield handle, info
    finally:
        serve.delete(app_name)
