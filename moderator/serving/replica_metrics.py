"""What a Classifier replica reports about its own compute, through Ray's metrics agent.

Ray exports these on the Ray pods' metrics port with a ``ray_`` prefix and the replica's
``application``, ``deployment`` and ``replica`` labels (the PodMonitor scrapes them):

- ``ray_moderator_replica_forward_seconds``: one merged forward pass on the replica's
  compute thread, from the batch's arrival there until its scores are back in host memory
  (on CUDA, copying the outputs back waits for the kernels, so this is device time plus
  the copies), labelled with the ``device`` kind (cpu or cuda).
- ``ray_moderator_replica_forward_posts``: posts in that forward pass.
- ``ray_moderator_replica_gpu_utilization_ratio``, ``..._gpu_memory_used_bytes`` and
  ``..._gpu_memory_total_bytes``: the replica's GPU as NVML reports it, sampled every few
  seconds; absent on CPU replicas.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

FORWARD_SECONDS_BOUNDS = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]  # fmt: skip
FORWARD_POSTS_BOUNDS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
GPU_SAMPLE_S = 5.0


class ReplicaMetrics:
    """Per-batch compute figures of one replica, and its GPU sampler when it has one."""

    def __init__(self, device: str) -> None:
        from ray.serve import metrics

        self.device_kind = "cuda" if device.startswith("cuda") else "cpu"
        self._tags = {"device": self.device_kind}
        self.forward_seconds = metrics.Histogram(
            "moderator_replica_forward_seconds",
            description="One merged forward pass on the replica's compute thread, until its "
            "scores are back in host memory.",
            boundaries=FORWARD_SECONDS_BOUNDS,
            tag_keys=("device",),
        )
        self.forward_posts = metrics.Histogram(
            "moderator_replica_forward_posts",
            description="Posts in one merged forward pass.",
            boundaries=FORWARD_POSTS_BOUNDS,
            tag_keys=("device",),
        )
        self.gpu_utilization = metrics.Gauge(
            "moderator_replica_gpu_utilization_ratio",
            description="Share of the last sample period the replica's GPU was running "
            "kernels (NVML), 0 to 1.",
        )
        self.gpu_memory_used = metrics.Gauge(
            "moderator_replica_gpu_memory_used_bytes",
            description="Memory in use on the replica's GPU, by every process (NVML).",
        )
        self.gpu_memory_total = metrics.Gauge(
            "moderator_replica_gpu_memory_total_bytes",
            description="Memory of the replica's GPU (NVML).",
        )
        self._sampler: GpuSampler | None = None

    def observe_forward(self, seconds: float, posts: int) -> None:
        self.forward_seconds.observe(seconds, tags=self._tags)
        self.forward_posts.observe(posts, tags=self._tags)

    def set_gpu(self, utilization: float, memory_used: int, memory_total: int) -> None:
        self.gpu_utilization.set(utilization)
        self.gpu_memory_used.set(memory_used)
        self.gpu_memory_total.set(memory_total)

    def start_gpu_sampler(self, device: str) -> None:
        """Sample the replica's CUDA device with NVML in the background (no-op on CPU)."""
        if self.device_kind != "cuda" or self._sampler is not None:
            return
        uuid = cuda_device_uuid(device)
        if uuid is None:
            return
        self._sampler = GpuSampler(uuid, self.set_gpu)
        self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()


def cuda_device_uuid(device: str) -> str | None:
    """NVML's name for torch's `device`: ordinals differ (CUDA_VISIBLE_DEVICES renumbers
    them inside a Ray replica), the UUID does not."""
    import torch

    try:
        index = torch.device(device).index or 0
        return f"GPU-{torch.cuda.get_device_properties(index).uuid}"
    except (RuntimeError, AssertionError, AttributeError) as exc:
        logger.warning("no GPU metrics: cannot identify CUDA device %s: %s", device, exc)
        return None


class GpuSampler(threading.Thread):
    """Reads utilisation and memory of one GPU from NVML every GPU_SAMPLE_S seconds."""

    def __init__(
        self,
        uuid: str,
        record: Callable[[float, int, int], None],
        period_s: float = GPU_SAMPLE_S,
    ) -> None:
        super().__init__(name="gpu-metrics", daemon=True)
        self.uuid = uuid
        self.record = record
        self.period_s = period_s
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByUUID(self.uuid)
        except Exception as exc:  # NVML missing (no driver library) or the UUID unknown
            logger.warning("no GPU metrics: NVML unavailable for %s: %s", self.uuid, exc)
            return
        try:
            while not self._halt.is_set():
                self.sample(pynvml, handle)
                self._halt.wait(self.period_s)
        finally:
            pynvml.nvmlShutdown()

    def sample(self, nvml: Any, handle: Any) -> None:
        try:
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception as exc:  # a transient NVML error must not end the sampler
            logger.debug("NVML sample failed: %s", exc)
            return
        self.record(rates.gpu / 100.0, int(memory.used), int(memory.total))
