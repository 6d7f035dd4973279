"""A throwaway `ray start --head` cluster: what a Ray user has running on their machine.

It registers itself the way `ray start` does (/tmp/ray/ray_current_cluster, which a bare
ray.init() joins). Stopping it stops only its own processes (`ray stop` would stop every
Ray on the machine, the test session's too) and puts the registration back as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import psutil

from moderator.local.process import free_port, wait_until
from moderator.serving.ray_auth import RayToken, cluster_accepts

REGISTRATION = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
RAY = Path(sys.executable).with_name("ray")


class RayStartCluster:
    def __init__(self, token: str | None, home: Path) -> None:
        self.token = token
        self.home = home
        self.gcs_port = free_port()
        self.client_port = free_port()
        self.gcs_address = f"127.0.0.1:{self.gcs_port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._registration = REGISTRATION.read_text() if REGISTRATION.exists() else None
        self.log = home / "ray-start.log"

    def __enter__(self) -> RayStartCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        env["HOME"] = str(self.home)
        env["RAY_AUTH_MODE"] = "disabled" if self.token is None else "token"
        if self.token is not None:
            env["RAY_AUTH_TOKEN"] = self.token
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(RAY),
                    "start",
                    "--head",
                    "--block",
                    f"--port={self.gcs_port}",
                    f"--ray-client-server-port={self.client_port}",
                    "--num-cpus=1",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        token = RayToken(self.token, "test") if self.token else None

        def answers() -> bool:
            assert self._process is not None and self._process.poll() is None, self.log
            # `ray start` registers the cluster after its client server is up.
            registered = REGISTRATION.exists() and REGISTRATION.read_text().strip().endswith(
                f":{self.gcs_port}"
            )
            return registered and bool(cluster_accepts(self.client_address, token, 1.0))

        wait_until(answers, 120, f"ray start --head to answer on {self.client_address}")
        return self

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            try:
                family = [psutil.Process(self._process.pid)]
                family += family[0].children(recursive=True)
            except psutil.NoSuchProcess:
                family = []
            for proc in family:
                proc.terminate()
            _, left = psutil.wait_procs(family, timeout=30)
            for proc in left:
                proc.kill()
        if self._registration is None:
            REGISTRATION.unlink(missing_ok=True)
        else:
            REGISTRATION.write_text(self._registration)
