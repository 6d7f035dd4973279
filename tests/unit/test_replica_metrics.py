"""The replica's GPU sampler and compute figures. NVML is replaced by a small fake with
the two calls the sampler makes (there is no GPU here); Ray's metric objects are real."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from moderator.serving.replica_metrics import GpuSampler, ReplicaMetrics


class FakeNvml:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        if self.fail:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:
        return SimpleNamespace(used=3 * 2**30, total=80 * 2**30, free=77 * 2**30)


def test_a_sample_records_utilisation_as_a_ratio_and_memory_in_bytes() -> None:
    recorded: list[tuple[float, int, int]] = []
    sampler = GpuSampler("GPU-test", lambda *values: recorded.append(values))
    sampler.sample(FakeNvml(), handle=object())
    assert recorded == [(0.37, 3 * 2**30, 80 * 2**30)]


def test_a_failed_sample_is_skipped_and_the_sampler_goes_on() -> None:
    recorded: list[tuple[float, int, int]] = []
    sampler = GpuSampler("GPU-test", lambda *values: recorded.append(values))
    sampler.sample(FakeNvml(fail=True), handle=object())
    sampler.sample(FakeNvml(), handle=object())
    assert recorded == [(0.37, 3 * 2**30, 80 * 2**30)]


def test_a_cpu_replica_starts_no_gpu_sampler_and_labels_its_device() -> None:
    metrics = ReplicaMetrics("cpu")
    metrics.start_gpu_sampler("cpu")
    assert metrics._sampler is None
    assert metrics.device_kind == "cpu"
    assert ReplicaMetrics("cuda:1").device_kind == "cuda"
    metrics.observe_forward(0.012, 48)  # outside a replica: recorded without Serve's labels
    metrics.stop()


def test_without_a_driver_the_sampler_ends_quietly() -> None:
    """No libnvidia-ml here: NVML's init fails, the thread logs it once and ends."""
    recorded: list[tuple[float, int, int]] = []
    sampler = GpuSampler("GPU-none", lambda *values: recorded.append(values), period_s=0.01)
    sampler.start()
    sampler.join(timeout=10)
    assert not sampler.is_alive()
    assert recorded == []
