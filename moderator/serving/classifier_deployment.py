"""The Classifier Ray Serve deployment: loads a checkpoint once, scores whole micro-batches."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from moderator.model import load_model
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.scoring import model_info, score_request

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "Classifier"


class ClassifierArgs(BaseModel):
    """Arguments of the Serve app builder (serveConfigV2 `args`, or `moderator serve`)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(default=None, description="Model directory; None → starter.")
    torch_threads: int = Field(default=2, ge=1)
    num_replicas: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)
    max_ongoing_requests: int = Field(default=8, ge=1)


@serve.deployment(name=DEPLOYMENT_NAME)
class ClassifierDeployment:
    def __init__(self, checkpoint: str | None, torch_threads: int) -> None:
        torch.set_num_threads(torch_threads)
        self.model = load_model(checkpoint)
        self.info = model_info(self.model)
        logger.info(
            "loaded model %s with categories %s", self.info.model_version, self.info.categories
        )

    def model_info(self) -> ModelInfo:
        return self.info

    def score_batch(self, request: ScoreRequest) -> ScoreResponse:
        return score_request(self.model, request)


def build_app(args: ClassifierArgs) -> Application:
    """Typed app builder: import path ``moderator.serving.classifier_deployment:build_app``."""
    return ClassifierDeployment.options(  # type: ignore[attr-defined]
        num_replicas=args.num_replicas,
        max_ongoing_requests=args.max_ongoing_requests,
        ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
    ).bind(str(args.checkpoint) if args.checkpoint else None, args.torch_threads)
