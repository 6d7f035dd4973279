"""Start the Serve app on a Ray cluster, or find a running one from a worker."""

from __future__ import annotations

import logging
import time

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from moderator.config import ServingSettings
from moderator.errors import ModeratorError

logger = logging.getLogger(__name__)


def classifier_args(serving: ServingSettings) -> dict[str, object]:
    return {
        "checkpoint": serving.checkpoint,
        "torch_threads": serving.torch_threads,
        "precision": serving.precision,
        "num_replicas": serving.num_replicas,
        "num_cpus": serving.num_cpus,
        "num_gpus": serving.num_gpus,
        "max_ongoing_requests": serving.max_ongoing_requests,
        "batching": {
            "max_batch_size": serving.max_batch_size,
            "batch_wait_timeout_s": serving.batch_wait_timeout_s,
        },
    }


def deploy_classifier(serving: ServingSettings) -> DeploymentHandle:
    """Deploy (or update) the Classifier app without an HTTP proxy: workers use handles."""
    # Imported here so processes that only call the deployment never import torch.
    from moderator.serving.classifier_deployment import ClassifierArgs, build_app

    serve.start(http_options={"location": "NoServer"})
    app = build_app(ClassifierArgs.model_validate(classifier_args(serving)))
    started = time.monotonic()
    handle = serve.run(app, name=serving.app_name, route_prefix=None)
    logger.info("Serve app %r ready in %.1f s", serving.app_name, time.monotonic() - started)
    return handle


def connect_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    try:
        ray.init(address=address or "auto", include_dashboard=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ModeratorError(
            f"cannot reach a Ray cluster at {address or 'auto'}: {exc}; "
            "set serving.ray_address (MODERATOR_SERVING__RAY_ADDRESS)"
        ) from exc


def get_classifier_handle(serving: ServingSettings, wait_s: float = 120.0) -> DeploymentHandle:
    """Handle to a running Classifier app, waiting for it to appear (it may still be deploying)."""
    connect_ray(serving.ray_address)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return serve.get_app_handle(serving.app_name)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ModeratorError(
                    f"Serve app {serving.app_name!r} is not running on the Ray cluster: {exc}"
                ) from exc
            time.sleep(1.0)
