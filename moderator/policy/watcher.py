"""Hot reload: watch a policy file and swap in each valid new version atomically.

The watcher polls every `interval_s` seconds: the policy file's resolved path,
inode, size and mtime, and the same for the term-list and bank files it uses.
That catches an edit in place, a rename over the file, and a Kubernetes
ConfigMap update (a symlink swap of the mount's ``..data`` directory). A
changed file is loaded, compiled and checked against the model's categories;
only then does `current()` return it. An invalid file is logged, counted in
moderator_policy_reloads_total{outcome="invalid"}, and the old policy keeps
deciding; the same broken content is not reported again until it changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from moderator import metrics
from moderator.policy.engine import CompiledPolicy
from moderator.policy.errors import PolicyError
from moderator.policy.loader import load_policy

logger = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int, int], ...]


def file_signature(paths: Sequence[Path]) -> Signature:
    parts = []
    for path in paths:
        try:
            stat = os.stat(path)  # follows symlinks: a ConfigMap swap changes the target
            parts.append((os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
        except OSError:
            parts.append((str(path), -1, -1, -1))
    return tuple(parts)


class PolicyWatcher:
    """A policy source that reloads its file when it changes; `current()` is lock-free."""

    def __init__(
        self,
        path: str | Path,
        interval_s: float = 10.0,
        loader: Callable[[Path], CompiledPolicy] = load_policy,
    ) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._loader = loader
        self._policy = loader(self.path)  # the first load must succeed
        self._signature = file_signature(self._watched(self._policy))
        self._model_categories: list[str] | None = None
        self._semantic_banks: list[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    def current(self) -> CompiledPolicy:
        return self._policy

    def require_categories(
        self, model_categories: Sequence[str], semantic_banks: Sequence[str] | None = None
    ) -> None:
        """Check the current policy, and every reload, against what the model scores (and
        the semantic banks the replica serves)."""
        self._policy.check_categories(model_categories, semantic_banks)
        self._model_categories = list(model_categories)
        self._semantic_banks = None if semantic_banks is None else list(semantic_banks)

    def _watched(self, policy: CompiledPolicy) -> list[Path]:
        return [self.path, *policy.dependencies]

    def poll(self) -> bool:
        """Check once; True when a new policy was swapped in."""
        with self._poll_lock:
            old = self._policy
            signature = file_signature(self._watched(old))
            previous = self._signature
            if signature == previous:
                return False
            self._signature = signature
            try:
                policy = self._loader(self.path)
                if self._model_categories is not None:
                    policy.check_categories(self._model_categories, self._semantic_banks)
            except PolicyError as exc:
                metrics.POLICY_RELOADS.labels(outcome="invalid").inc()
                logger.error(
                    "policy reload rejected, still deciding with %s: %s",
                    old.qualified_version,
                    exc,
                )
                return False
            self._signature = file_signature(self._watched(policy))
            if policy.digest == old.digest and previous[1:] == self._signature[1:]:
                return False  # the policy file was touched, nothing it reads changed
            self._policy = policy
        metrics.POLICY_RELOADS.labels(outcome="ok").inc()
        logger.info(
            "policy reloaded: %s -> %s (%d rules) from %s",
            old.qualified_version,
            policy.qualified_version,
            len(policy.rules),
            self.path,
        )
        return True

    def start(self) -> PolicyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the watcher must outlive any surprise; the old policy stays
                logger.exception("policy watcher failed; the current policy stays")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
