"""Ray token authentication: which token to use, and whether a cluster accepts it.

Ray 2.52+ refuses clients without the cluster's token when the cluster runs with
RAY_AUTH_MODE=token. Ray reads the mode and token from the environment of each process (and
the processes it starts inherit them), so `use_token` sets them here, from our settings.

A missing or wrong token makes `ray.init` retry for 20 s (GCS address) or 30 s (Ray Client)
and then blame "a previous Ray instance that has since crashed". `check_token` asks the
cluster first with one cheap RPC carrying the token, which it answers in milliseconds with
UNAUTHENTICATED when it refuses, so the error can say what is wrong.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from moderator.errors import ModeratorError
from moderator.serving_settings import ServingSettings

logger = logging.getLogger(__name__)

MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
# Where `ray get-auth-token --generate` puts a token for clusters this user starts.
RAY_DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
TOKEN_HINT = (
    "set serving.ray_auth_token (MODERATOR_SERVING__RAY_AUTH_TOKEN) or "
    "serving.ray_auth_token_file to the cluster's token (docs/security.md)"
)


class RayAuthError(ModeratorError):
    """The token is missing or unreadable, or the Ray cluster refused it."""


@dataclass(frozen=True)
class RayToken:
    # Out of the repr: a token must not reach a log line or a traceback that way.
    value: str = field(repr=False)
    source: str  # Where it came from, for error messages: a setting or file name.


def new_local_token() -> RayToken:
    """A token for a Ray instance this process starts: 256 random bits, never written to disk,
    so another user of the machine cannot attach to it."""
    return RayToken(secrets.token_hex(32), "a per-run token")


def resolve_token(serving: ServingSettings) -> RayToken | None:
    """The token to join with; None when serving.ray_auth_mode is disabled.

    Order: serving.ray_auth_token, serving.ray_auth_token_file, then Ray's own sources
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) for a cluster this user
    started with `ray start`.
    """
    if serving.ray_auth_mode == "disabled":
        return None
    if serving.ray_auth_token is not None:
        return _checked(serving.ray_auth_token.get_secret_value(), "serving.ray_auth_token")
    if serving.ray_auth_token_file is not None:
        return _read_token_file(serving.ray_auth_token_file, "serving.ray_auth_token_file")
    if os.environ.get(TOKEN_ENV):
        return _checked(os.environ[TOKEN_ENV], TOKEN_ENV)
    if os.environ.get(TOKEN_PATH_ENV):
        return _read_token_file(Path(os.environ[TOKEN_PATH_ENV]), TOKEN_PATH_ENV)
    default = RAY_DEFAULT_TOKEN_FILE.expanduser()
    if default.is_file():
        return _read_token_file(default, str(RAY_DEFAULT_TOKEN_FILE))
    raise RayAuthError(
        f"serving.ray_auth_mode is token but no Ray token is configured: {TOKEN_HINT}, or "
        "serving.ray_auth_mode: disabled for a cluster that runs without authentication"
    )


def _read_token_file(path: Path, setting: str) -> RayToken:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RayAuthError(f"{setting}: cannot read the Ray token file {path}: {exc}") from None
    return _checked(text, f"{setting} ({path})")


def _checked(value: str, source: str) -> RayToken:
    token = value.strip()
    if not token:
        raise RayAuthError(f"{source}: the Ray token is empty")
    if any(not c.isprintable() or c.isspace() for c in token):
        # Ray sends it as an HTTP/2 header value: it must be one printable word.
        raise RayAuthError(f"{source}: the Ray token must not contain spaces or control chars")
    return RayToken(token, source)


def use_token(token: RayToken | None) -> None:
    """Make this process, and the Ray processes it starts, use `token` (None: no auth)."""
    os.environ.pop(TOKEN_PATH_ENV, None)
    if token is None:
        os.environ[MODE_ENV] = "disabled"
        os.environ.pop(TOKEN_ENV, None)
    else:
        os.environ[MODE_ENV] = "token"
        os.environ[TOKEN_ENV] = token.value
    # Ray caches the mode and the token once read; this is how Ray's own tests reload them.
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def check_token(address: str, token: RayToken | None, timeout_s: float = 5.0) -> None:
    """Raise RayAuthError when the cluster at `address` refuses `token`.

    An unreachable cluster is left to ray.init, which waits for it and reports it itself.
    """
    accepted = cluster_accepts(address, token, timeout_s)
    if accepted is None:
        return
    if accepted:
        if token is None:
            logger.warning(
                "Ray token authentication is off (serving.ray_auth_mode: disabled): anyone who "
                "can reach %s can run code on that cluster",
                address,
            )
        elif cluster_accepts(address, None, timeout_s):
            logger.warning(
                "the Ray cluster at %s accepts clients without a token: anyone who can reach "
                "it can run code on it; start it with RAY_AUTH_MODE=token (docs/security.md)",
                address,
            )
        return
    if token is None:
        raise RayAuthError(
            f"the Ray cluster at {address} requires a token and none is configured "
            f"(serving.ray_auth_mode: disabled): {TOKEN_HINT}"
        )
    raise RayAuthError(
        f"the Ray cluster at {address} refused the token from {token.source}: it is not that "
        f"cluster's token (was its Secret rotated?): {TOKEN_HINT}"
    )


def cluster_accepts(address: str, token: RayToken | None, timeout_s: float = 5.0) -> bool | None:
    """Whether the cluster at `address` answers one cheap RPC carrying `token` (None: no
    token): True, False (UNAUTHENTICATED), or None when there is no answer either way.

    `address` is a Ray Client address (ray://host:port) or a GCS address (host:port).
    """
    target, rpc = _probe_rpc(address)
    if rpc is None:
        return None
    return _accepts(target, rpc, token, timeout_s)


def _probe_rpc(address: str) -> tuple[str, str | None]:
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return address, None  # A TLS channel needs Ray's certificates: let ray.init check.
    if address.startswith("ray://"):
        return address.removeprefix("ray://").rstrip("/"), "client"
    if "://" in address or ":" not in address:
        return address, None
    return address, "gcs"


def _accepts(target: str, rpc: str, token: RayToken | None, timeout_s: float) -> bool | None:
    """True/False: the cluster answered / refused the token; None: no answer either way."""
    # Generated protobuf modules: no type information.
    from ray.core.generated import (
        gcs_service_pb2,
        gcs_service_pb2_grpc,
        ray_client_pb2,
        ray_client_pb2_grpc,
    )

    client_pb: Any = ray_client_pb2
    gcs_pb: Any = gcs_service_pb2
    metadata = [("authorization", f"Bearer {token.value}")] if token else []
    with grpc.insecure_channel(target) as channel:
        try:
            if rpc == "client":
                ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
                    client_pb.ClusterInfoRequest(type=client_pb.ClusterInfoType.PING),
                    metadata=metadata,
                    timeout=timeout_s,
                )
            else:
                gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    gcs_pb.GetClusterIdRequest(), metadata=metadata, timeout=timeout_s
                )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return False
            logger.debug("Ray token check at %s got no answer: %s", target, exc.code())
            return None
    return True
