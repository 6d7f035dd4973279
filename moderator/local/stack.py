"""The embedded stack: a local broker and Redis unless configured, Ray, the Serve app, workers."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import ray
import yaml
from pydantic import SecretStr
from ray import serve

from moderator.config import Settings, settings_file_data
from moderator.io import ensure_topics
from moderator.local.broker import LocalBroker
from moderator.local.redis_server import LocalRedis
from moderator.serving.ray_auth import MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV
from moderator.serving.runner import deploy_classifier, start_local_ray
from moderator.serving_settings import ServingSettings

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def local_services(settings: Settings) -> Iterator[Settings]:
    """Start what the settings leave unset (broker, Redis); yield settings pointing at them."""
    with contextlib.ExitStack() as stack:
        kafka, redis = settings.kafka, settings.redis
        if not kafka.bootstrap_servers:
            broker = stack.enter_context(LocalBroker())
            kafka = kafka.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
        if redis.enabled and redis.url is None:
            local_redis = stack.enter_context(LocalRedis())
            redis = redis.model_copy(update={"url": SecretStr(local_redis.url)})
        yield settings.model_copy(update={"kafka": kafka, "redis": redis})


@contextlib.contextmanager
def local_ray(
    settings: Settings, num_cpus: int = 2, wait_for_app: bool = True
) -> Iterator[Settings]:
    """Start Ray of our own on this machine with the Classifier app; yield settings that
    join it (its address and per-run token).

    With wait_for_app=False the app deploys on a background thread while the caller
    starts workers (they wait for the app themselves): the replica's model load and the
    worker's start-up overlap, which takes ~10 s off the demo's first decision.
    """
    serving = start_local_ray(settings.serving, num_cpus)
    deployer = threading.Thread(
        target=_deploy_logged, args=(serving,), name="serve-deploy", daemon=True
    )
    try:
        deployer.start()
        if wait_for_app:
            deployer.join()
        yield settings.model_copy(update={"serving": serving})
    finally:
        deployer.join(timeout=120)
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def _deploy_logged(serving: ServingSettings) -> None:
    try:
        deploy_classifier(serving)
    except Exception:
        logger.exception("deploying the Classifier app failed; workers will keep waiting")


def create_topics(settings: Settings, partitions: int = 4) -> None:
    kafka = settings.kafka
    ensure_topics(
        kafka,
        [kafka.posts_topic, kafka.decisions_topic, kafka.review_topic, kafka.dlq_topic],
        partitions=partitions,
    )


def write_settings_file(settings: Settings, directory: Path) -> Path:
    """The settings, complete, as a YAML file (owner-only: it holds secrets) for a worker
    process started by module path with --config."""
    config = directory / "settings.yaml"
    config.write_text(yaml.safe_dump(settings_file_data(settings)))
    config.chmod(0o600)
    return config


class WorkerProcess:
    """`python -m workers` in a child process, configured through a settings file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._config_dir = tempfile.TemporaryDirectory(prefix="moderator-worker-")

    def start(self) -> WorkerProcess:
        config = write_settings_file(self.settings, Path(self._config_dir.name))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env(),
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no commit — what a crash or an OOM kill looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM: the worker drains the batch in hand and commits before it exits."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("worker did not stop in %.0f s; killing it", timeout_s)
                self.process.kill()
                self.process.wait()
        self._config_dir.cleanup()
        return self.process.returncode


def worker_env() -> dict[str, str]:
    """The environment of a worker process started by module path: this one's, less what
    would override its settings file."""
    # The settings file is complete; stray MODERATOR_ (or Ray address and token) variables
    # would override it.
    ray_vars = {MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV, "RAY_ADDRESS"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MODERATOR_") and k not in ray_vars
    }
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
