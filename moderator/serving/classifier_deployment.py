"""The Classifier Ray Serve deployment: loads a checkpoint once, scores micro-batches.

Each worker request is already a micro-batch; @serve.batch additionally merges
requests that arrive together from several workers into one forward pass. Forward
passes run on one compute thread per replica, so while a batch computes the replica's
event loop keeps receiving requests; everything that arrives meanwhile goes into the next
forward pass together (ForwardMerger).
The arguments (ClassifierArgs) are defined once, in moderator.serving_settings.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from ray import serve
from ray.serve import Application

from moderator.model import InferenceOptions, ModerationModel, load_model
from moderator.model.inference import resolve_device
from moderator.retrieval.serving import load_semantic_banks
from moderator.serving.forward_merger import ForwardMerger
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.recent import RecentEmbeddings
from moderator.serving.replica_metrics import ReplicaMetrics
from moderator.serving.scoring import merge_requests, model_info, score_request, split_response
from moderator.serving_settings import BatchingConfig, ClassifierArgs

__all__ = [
    "DEPLOYMENT_NAME",
    "LIVE_OPTIONS",
    "ClassifierArgs",
    "ClassifierDeployment",
    "build_app",
    "deployment_options",
    "inference_options",
    "load_replica_model",
]

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "Classifier"
# @serve.batch hands each batch it closes to the ForwardMerger at once (up to this many at a
# time), and the merger computes all those waiting in the next forward pass; the replica's
# max_ongoing_requests still bounds how many requests that can be.
MAX_CONCURRENT_BATCHES = 64


class _NoBatchCapWarning(logging.Filter):
    """Ray warns when max_batch_size * max_concurrent_batches exceeds max_ongoing_requests,
    which is true here by design (the merger, not Ray, decides the forward batch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max_concurrent_batches" not in record.getMessage()


logging.getLogger("ray.serve").addFilter(_NoBatchCapWarning())
# Serve options that Serve changes on running replicas. Any change of an app's args restarts
# every replica, so the chart sets these as a serveConfigV2 deployment override instead.
LIVE_OPTIONS = (
    "num_replicas",
    "autoscaling_config",
    "max_ongoing_requests",
    "max_queued_requests",
    "user_config",
)


def inference_options(args: ClassifierArgs) -> InferenceOptions:
    """How a replica runs the model; resolves device auto (an unusable CUDA device raises
    ModelLoadError here, at load, never at the first batch)."""
    return InferenceOptions(
        precision=args.precision,
        device=resolve_device(args.device, args.num_gpus),
        tf32=args.tf32,
        compile=args.compile,
    )


def load_replica_model(args: ClassifierArgs) -> ModerationModel:
    """The model as a replica runs it (the bench's raw loop uses it too)."""
    return load_model(args.checkpoint, inference_options(args))


def deployment_options(args: ClassifierArgs) -> dict[str, Any]:
    """The Serve options of the Classifier deployment (those in LIVE_OPTIONS and the rest)."""
    options: dict[str, Any] = {
        "max_ongoing_requests": args.max_ongoing_requests,
        "max_queued_requests": args.max_queued_requests,
        "ray_actor_options": {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
        "user_config": args.batching.model_dump(),
    }
    if args.autoscaling is None:
        options["num_replicas"] = args.num_replicas
    else:
        options["num_replicas"] = "auto"
        options["autoscaling_config"] = args.autoscaling.model_dump()
    return options


@serve.deployment(name=DEPLOYMENT_NAME)
class ClassifierDeployment:
    def __init__(self, args: ClassifierArgs) -> None:
        # One thread runs every forward pass: the event loop stays free to receive requests,
        # and torch's per-thread state (OpenMP threads, CUDA stream, compiled graphs) is the
        # same at load, warm-up and every batch. One thread also means self.recent needs no
        # lock. The thread count is set there, since the forwards run there.
        self._compute = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="classifier-compute",
            initializer=torch.set_num_threads,
            initargs=(args.torch_threads,),
        )
        self.model = self._compute.submit(load_replica_model, args).result()
        self._merger = ForwardMerger(self._compute, self._forward)
        options = inference_options(args)
        self.recent = RecentEmbeddings(
            args.recent_embeddings, int(args.recent_embeddings_mib * 2**20)
        )
        # Refuses, before serving anything, a bank built with another model (names it).
        self.banks = load_semantic_banks(
            args.semantic,
            self.model.model_version,
            (self.model.image_embedding_dim, self.model.text_embedding_dim),
            args.torch_threads,
        )
        self.info = model_info(self.model, self.banks)
        self.metrics = ReplicaMetrics(options.device)
        self.metrics.start_gpu_sampler(options.device)
        logger.info(
            "loaded model %s with categories %s (%s, %s)",
            self.info.model_version,
            self.info.categories,
            options.device,
            args.precision,
        )

    def __del__(self) -> None:
        self._compute.shutdown(wait=False)
        if hasattr(self, "metrics"):  # absent when loading the model failed
            self.metrics.stop()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = BatchingConfig.model_validate(user_config)
        self._score_merged.set_max_batch_size(config.max_batch_size)  # type: ignore[attr-defined]
        self._score_merged.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            config.batch_wait_timeout_s
        )
        logger.info("batching set to %s", config)

    def model_info(self) -> ModelInfo:
        return self.info

    async def score_batch(self, request: ScoreRequest) -> ScoreResponse:
        response: ScoreResponse = await self._score_merged(request)
        return response

    @serve.batch(
        max_batch_size=4,
        batch_wait_timeout_s=0.002,
        max_concurrent_batches=MAX_CONCURRENT_BATCHES,
    )
    async def _score_merged(self, requests: list[ScoreRequest]) -> list[ScoreResponse]:
        return await self._merger.run(requests)

    def _forward(self, requests: list[ScoreRequest]) -> list[ScoreResponse]:
        """One forward pass for a merged batch; on the compute thread only."""
        started = time.perf_counter()
        merged, rows = merge_requests(
            requests, self.info.image_embedding_dim, self.info.text_embedding_dim
        )
        responses = split_response(
            score_request(self.model, merged, self.recent, self.banks), requests, rows
        )
        self.metrics.observe_forward(time.perf_counter() - started, len(merged))
        return responses


def build_app(args: ClassifierArgs) -> Application:
    """Typed app builder: import path ``moderator.serving.classifier_deployment:build_app``."""
    deployment = ClassifierDeployment.options(**deployment_options(args))  # type: ignore[attr-defined]
    app: Application = deployment.bind(args)
    return app
