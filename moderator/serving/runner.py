"""Start the Serve app on a Ray cluster, or find a running one from a worker."""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from pydantic import SecretStr
from ray import serve
from ray.serve.handle import DeploymentHandle

from moderator.errors import ModeratorError
from moderator.serving.ray_auth import check_token, new_local_token, resolve_token, use_token
from moderator.serving_settings import ServingSettings

logger = logging.getLogger(__name__)


def deploy_classifier(serving: ServingSettings) -> DeploymentHandle[Any]:
    """Deploy (or update) the Classifier app without an HTTP proxy: workers use handles."""
    # Imported here so processes that only call the deployment never import torch.
    from moderator.serving.classifier_deployment import build_app

    serve.start(http_options={"location": "NoServer"})
    app = build_app(serving.classifier)
    started = time.monotonic()
    handle = serve.run(app, name=serving.app_name, route_prefix=None)
    logger.info("Serve app %r ready in %.1f s", serving.app_name, time.monotonic() - started)
    return handle


def connect_ray(serving: ServingSettings) -> None:
    """Join the Ray cluster at serving.ray_address with the configured token.

    The token is checked first (`check_token`), so a missing or wrong one is a clear error
    in milliseconds rather than ray.init's 20-30 s of retries blaming a crashed instance.
    """
    if ray.is_initialized():
        return
    address = serving.ray_address or "auto"
    token = resolve_token(serving)
    use_token(token)
    check_token(address, token)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ModeratorError(
            f"cannot reach a Ray cluster at {address}: {exc}; "
            "set serving.ray_address (MODERATOR_SERVING__RAY_ADDRESS)"
        ) from exc


def start_local_ray(serving: ServingSettings, num_cpus: int) -> ServingSettings:
    """Start a Ray instance of this process's own; return serving settings that join it.

    address="local" always starts a new instance: without it ray.init joins any cluster
    registered on the machine (a user's `ray start`, or one that died without `ray stop`)
    and then fails on num_cpus. In token mode the instance gets a per-run token, kept in
    this process's environment and the 0600 settings files of its workers: never where
    another user of the machine could read it.
    """
    token = new_local_token() if serving.ray_auth_mode == "token" else None
    if token is None:
        logger.warning("starting local Ray without token authentication (ray_auth_mode)")
    use_token(token)
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return serving.model_copy(
        update={
            "ray_address": ray.get_runtime_context().gcs_address,
            "ray_auth_token": SecretStr(token.value) if token else None,
            "ray_auth_token_file": None,
        }
    )


def get_classifier_handle(serving: ServingSettings, wait_s: float = 120.0) -> DeploymentHandle[Any]:
    """Handle to a running Classifier app, waiting for it to appear (it may still be deploying)."""
    connect_ray(serving)
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
