"""Settings of the Classifier Serve app and of joining Ray (the `serving` section of
moderator.config.Settings), and the model arithmetic names serving, training and the model
package share (torch-free here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from moderator.retrieval.settings import SemanticBankSettings

# Model arithmetic, shared by serving, training and the model package (torch-free here).
# fp16 needs CUDA; int8 (dynamic, Linear layers) is CPU-only. docs/model.md has the trade-offs.
Precision = Literal["fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
# auto: CUDA when the replica was given a GPU and torch sees one, else the CPU.
Device = Annotated[str, StringConstraints(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")]


class _Args(BaseModel):
    # Values, as every settings section (moderator.config): copies via model_copy(update=...).
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(_Args):
    """@serve.batch settings; live: Serve hands them to running replicas as user_config."""

    max_batch_size: int = Field(default=4, ge=1, description="Worker requests per forward pass.")
    batch_wait_timeout_s: float = Field(
        default=0.002, ge=0, description="Longest wait for more requests after a batch's first."
    )


class AutoscalingArgs(_Args):
    """Serve autoscaling of the Classifier replicas (Serve's autoscaling_config)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> AutoscalingArgs:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling min_replicas exceeds max_replicas")
        return self


class ClassifierArgs(_Args):
    """The Classifier Serve app, defined once: settings serving.classifier (moderator serve,
    the demo, the bench, the tests), Helm serving.classifier.*, and the args of the app
    builder moderator.serving.classifier_deployment:build_app in the chart's serveConfigV2.
    """

    # Read when a replica starts (the app's args in the chart: a change restarts replicas).
    checkpoint: Path | None = Field(default=None, description="Model directory; unset → starter.")
    device: Device = Field(
        default="auto", description="auto: CUDA when num_gpus > 0 and torch sees a GPU, else cpu."
    )
    precision: Precision = Field(default="fp32", description="See docs/model.md.")
    tf32: bool = Field(default=False, description="TF32 matmuls on CUDA (Ampere and newer).")
    compile: bool = Field(default=False, description="torch.compile the encoders at load.")
    torch_threads: int = Field(default=2, ge=1, description="torch CPU threads per replica.")
    num_cpus: float = Field(default=1.0, gt=0, description="CPUs Ray reserves per replica.")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per replica; fractions share.")
    recent_embeddings: int = Field(
        default=4096,
        ge=0,
        description="Embeddings per kind the replica remembers, to reuse for reposts whose"
        " original is still in flight (not yet in Redis); 0 turns it off.",
    )
    recent_embeddings_mib: float = Field(
        default=256.0,
        ge=0,
        description="Memory those embeddings may take, in MiB (both kinds together): it binds"
        " for grid features (single-stream models), whose entries are ~50x a pooled vector's.",
    )
    # Serve options (a deployment override in the chart: applied to running replicas).
    num_replicas: int = Field(default=1, ge=1, description="Replicas, unless autoscaling.")
    max_ongoing_requests: int = Field(
        default=8, ge=1, description="Requests in flight per replica; caps the batch it forms."
    )
    max_queued_requests: int = Field(
        default=64, ge=-1, description="Beyond this, callers get BackPressureError (-1: no cap)."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    autoscaling: AutoscalingArgs | None = Field(default=None, description="Unset → num_replicas.")
    semantic: SemanticBankSettings = Field(default_factory=SemanticBankSettings)

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierArgs:
        if self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                "max_ongoing_requests must be >= batching.max_batch_size, "
                "or Serve silently caps the batch size"
            )
        explicit_cuda = self.device.startswith("cuda")
        if explicit_cuda and self.num_gpus == 0:
            raise ValueError(
                f"device {self.device} needs num_gpus > 0: Ray hides every GPU from a replica"
                " given none"
            )
        # What device auto becomes at load, given a GPU that torch sees.
        on_cuda = explicit_cuda or (self.device == "auto" and self.num_gpus > 0)
        if self.precision == "int8" and on_cuda:
            raise ValueError(
                f"precision int8 runs on the CPU only (device {self.device}, num_gpus"
                f" {self.num_gpus}): use bf16 or fp16 on CUDA, or device cpu"
            )
        if self.precision == "fp16" and not on_cuda:
            raise ValueError(
                f"precision fp16 needs CUDA (device {self.device}, num_gpus {self.num_gpus}):"
                " use bf16 on the CPU, or give the replica a GPU"
            )
        return self


class ServingSettings(_Args):
    # Errors never echo the input: this section holds the Ray token.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    ray_address: str | None = Field(default=None, description="Ray cluster to join; unset → local.")
    ray_auth_mode: Literal["token", "disabled"] = Field(
        default="token",
        description="token: join Ray only with a token, and start local Ray with a per-run one.",
    )
    ray_auth_token: SecretStr | None = Field(
        default=None, description="Token of the Ray cluster to join (RAY_AUTH_TOKEN's value)."
    )
    ray_auth_token_file: Path | None = Field(
        default=None, description="File holding that token (a mounted Secret), if not inline."
    )
    app_name: str = "moderator"
    classifier: ClassifierArgs = Field(
        default_factory=ClassifierArgs,
        description="The Classifier app that moderator serve and the demo deploy.",
    )
    request_timeout_s: float = Field(default=120.0, gt=0)
    unavailable_restart_s: float = Field(
        default=300.0, gt=0, description="Model failing this long → /healthz fails (restart)."
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        # Settings files and MODERATOR_SERVING__* variables written before serving.classifier.
        if isinstance(data, dict):
            for key in data:
                if key in ClassifierArgs.model_fields:
                    raise ValueError(f"serving.{key} is now serving.classifier.{key}")
                if key in BatchingConfig.model_fields:
                    raise ValueError(f"serving.{key} is now serving.classifier.batching.{key}")
        return data
