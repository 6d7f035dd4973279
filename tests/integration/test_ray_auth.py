"""Ray token authentication on real Ray: the session's own instance (started the way the
demo starts one) and a throwaway `ray start --head` cluster with a token of its own, reached
over its GCS address and over Ray Client (the way the chart's workers reach KubeRay's)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from pydantic import SecretStr

from moderator.config import Settings, settings_file_data
from moderator.serving.ray_auth import RayToken, cluster_accepts
from moderator.serving_settings import ServingSettings
from tests.integration.ray_start import REGISTRATION, RayStartCluster
from tests.paths import REPO

pytestmark = pytest.mark.integration

CONNECT = """
import sys
import ray
from moderator.serving_settings import ServingSettings
from moderator.serving.runner import connect_ray
connect_ray(ServingSettings.model_validate_json(sys.argv[1]))
print("answer", ray.get(ray.remote(lambda: 6 * 7).remote()))
"""


@pytest.fixture(scope="module")
def user_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayStartCluster]:
    """A Ray user's own cluster, with token auth on, registered on the machine."""
    home = tmp_path_factory.mktemp("ray-user")
    with RayStartCluster(secrets.token_hex(32), home) as cluster:
        yield cluster


def run_python(home: Path, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return run_clean(home, [sys.executable, *args], timeout_s)


def run_clean(home: Path, argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """A fresh process with no Ray address or token in its environment or home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MODERATOR_"))}
    env["HOME"] = str(home)
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout_s,
        check=False,
    )


# Ray 2.60's client proxy now and then loses the per-client server it forks (its log:
# "SpecificServer startup failed", an empty .err, the next client fine; or the forked server
# is already a zombie when the proxy reads its command line: psutil.ZombieProcess inside
# start_specific_server): Ray's flake, not a refusal, so a join that fails that way is tried
# once more.
RAY_CLIENT_FLAKES = ("Starting Ray client server failed", "in start_specific_server")


def connect(home: Path, code: str = CONNECT, **serving: object) -> subprocess.CompletedProcess[str]:
    """Join a cluster through connect_ray in a fresh process with these serving settings."""
    result = run_python(home, "-c", code, json.dumps(serving, default=str))
    if result.returncode != 0 and any(flake in result.stderr for flake in RAY_CLIENT_FLAKES):
        result = run_python(home, "-c", code, json.dumps(serving, default=str))
    return result


def _secret(serving: ServingSettings) -> str:
    assert serving.ray_auth_token is not None
    return serving.ray_auth_token.get_secret_value()


def test_the_cluster_answers_only_its_token(user_cluster: RayStartCluster) -> None:
    assert user_cluster.token is not None
    right = RayToken(user_cluster.token, "test")
    wrong = RayToken(secrets.token_hex(32), "test")
    for address in (user_cluster.gcs_address, user_cluster.client_address):
        assert cluster_accepts(address, right) is True, address
        assert cluster_accepts(address, wrong) is False, address
        assert cluster_accepts(address, None) is False, address


def test_plain_ray_without_the_token_is_refused(
    user_cluster: RayStartCluster, tmp_path: Path
) -> None:
    """Ray itself refuses (this is not our pre-check): ray.init retries, then gives up."""
    code = "import sys, ray; ray.init(address=sys.argv[1]); print('joined')"
    result = run_python(tmp_path, "-c", code, user_cluster.gcs_address)
    assert result.returncode != 0
    assert "joined" not in result.stdout
    assert "ConnectionError" in result.stderr
    assert "InvalidAuthToken" in result.stderr


def test_joining_names_a_missing_or_wrong_token_at_once(
    user_cluster: RayStartCluster, tmp_path: Path
) -> None:
    assert user_cluster.token is not None
    wrong = secrets.token_hex(32)
    refused = connect(tmp_path, ray_address=user_cluster.client_address, ray_auth_token=wrong)
    assert refused.returncode != 0
    assert (
        f"the Ray cluster at {user_cluster.client_address} refused the token from "
        "serving.ray_auth_token" in refused.stderr
    ), refused.stderr[-2000:]
    assert wrong not in refused.stdout + refused.stderr

    missing = connect(tmp_path, ray_address=user_cluster.gcs_address)
    assert missing.returncode != 0
    assert "no Ray token is configured" in missing.stderr, missing.stderr[-2000:]

    off = connect(tmp_path, ray_address=user_cluster.gcs_address, ray_auth_mode="disabled")
    assert off.returncode != 0
    assert "requires a token and none is configured" in off.stderr, off.stderr[-2000:]


def test_joining_with_the_token_runs_code(user_cluster: RayStartCluster, tmp_path: Path) -> None:
    assert user_cluster.token is not None
    client = connect(
        tmp_path, ray_address=user_cluster.client_address, ray_auth_token=user_cluster.token
    )
    assert "answer 42" in client.stdout, client.stderr[-2000:]
    assert user_cluster.token not in client.stdout + client.stderr

    token_file = tmp_path / "ray-token"
    token_file.write_text(user_cluster.token + "\n")
    token_file.chmod(0o600)
    gcs = connect(tmp_path, ray_address=user_cluster.gcs_address, ray_auth_token_file=token_file)
    assert "answer 42" in gcs.stdout, gcs.stderr[-2000:]


def test_a_worker_with_a_wrong_token_exits_with_the_reason(
    isolated_settings: Settings, ray_serving: ServingSettings, tmp_path: Path
) -> None:
    wrong = secrets.token_hex(32)
    serving = ray_serving.model_copy(update={"ray_auth_token": SecretStr(wrong)})
    settings = isolated_settings.model_copy(update={"serving": serving})
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(settings_file_data(settings)))
    result = run_python(tmp_path, "-m", "workers", "--config", str(config), timeout_s=120)
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-3000:]
    assert "refused the token from serving.ray_auth_token" in log, log[-3000:]
    assert wrong not in log


def test_local_ray_token_stays_off_disk_and_command_lines(ray_serving: ServingSettings) -> None:
    """The session's Ray was started like the demo's: a second user of the machine finds its
    token in no file and no process listing, and the instance refuses them without it."""
    import ray

    token = _secret(ray_serving)
    address = ray_serving.ray_address
    assert address is not None
    assert cluster_accepts(address, RayToken(token, "test")) is True
    assert cluster_accepts(address, None) is False
    default_file = Path("~/.ray/auth_token").expanduser()
    assert not default_file.exists() or token not in default_file.read_text()

    node = ray._private.worker._global_node
    assert node is not None
    session_dir = Path(node.get_session_dir_path())
    leaked = [
        path
        for path in session_dir.rglob("*")
        if path.is_file() and not path.is_socket() and token.encode() in _bytes(path)
    ]
    assert leaked == []
    for proc in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(proc.info["cmdline"] or [])


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.e2e
def test_demo_runs_beside_a_ray_start_cluster_and_leaves_it_alone(
    user_cluster: RayStartCluster, tmp_path: Path
) -> None:
    """`moderator demo` on a machine where the user's own `ray start` cluster is registered:
    before address="local", ray.init joined that cluster and failed on num_cpus."""
    assert REGISTRATION.read_text().strip().endswith(f":{user_cluster.gcs_port}")
    out = tmp_path / "demo"
    moderator = str(Path(sys.executable).with_name("moderator"))
    result = run_clean(
        user_cluster.home,
        [moderator, "demo", "--posts", "40", "--out", str(out), "--timeout", "300"],
        timeout_s=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "undecided" not in result.stdout
    assert (out / "decisions.jsonl").read_text().count("\n") > 0

    # The user's cluster: still up, still registered, and the demo put nothing on it.
    assert user_cluster.alive()
    assert REGISTRATION.read_text().strip().endswith(f":{user_cluster.gcs_port}")
    assert user_cluster.token is not None
    census = CONNECT.replace(
        'print("answer"',
        'print("actors", ray.util.list_named_actors(all_namespaces=True), "nodes", '
        'len(ray.nodes()))\nprint("answer"',
    )
    probe = connect(
        user_cluster.home,
        census,
        ray_address=user_cluster.client_address,
        ray_auth_token=user_cluster.token,
    )
    assert "actors [] nodes 1" in probe.stdout, probe.stderr[-2000:]
