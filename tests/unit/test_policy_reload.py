"""Hot reload: edits, invalid files and ConfigMap-style symlink swaps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moderator import metrics
from moderator.policy.errors import PolicyError
from moderator.policy.watcher import PolicyWatcher
from moderator.schema import Action

POLICY = """\
name: live
version: "{version}"
categories: [hate]
term_lists:
  words: {{file: words.txt}}
rules:
  - id: hate
    when: scores.hate >= {threshold}
    action: block
  - id: words
    when: has_term(post.caption, "words")
    action: review
"""


def write_policy(directory: Path, version: str, threshold: str = "0.9") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "words.txt").write_text("alpha\n")
    path = directory / "policy.yaml"
    path.write_text(POLICY.format(version=version, threshold=threshold))
    return path


def _bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def reloads(outcome: str) -> float:
    return metrics.POLICY_RELOADS.labels(outcome=outcome)._value.get()


def test_an_edit_is_swapped_in(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "1")
    watcher = PolicyWatcher(path, interval_s=0.05)
    assert not watcher.poll()
    before = reloads("ok")
    path.write_text(POLICY.format(version="2", threshold="0.5"))
    _bump_mtime(path)
    assert watcher.poll()
    assert watcher.current().qualified_version == "live@2"
    assert watcher.current().decide({"hate": 0.6}).action is Action.BLOCK
    assert reloads("ok") == before + 1


def test_an_invalid_file_is_rejected_and_the_old_policy_keeps_deciding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_policy(tmp_path, "1")
    watcher = PolicyWatcher(path)
    before = reloads("invalid")
    path.write_text(POLICY.format(version="2", threshold="'high'"))
    _bump_mtime(path)
    assert not watcher.poll()
    assert watcher.current().qualified_version == "live@1"
    assert reloads("invalid") == before + 1
    assert "policy reload rejected, still deciding with live@1" in caplog.text
    assert "policy.yaml:8" in caplog.text
    assert not watcher.poll()  # the same broken file is not retried
    assert reloads("invalid") == before + 1


def test_a_dependency_change_reloads(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "1")
    watcher = PolicyWatcher(path)
    (tmp_path / "words.txt").write_text("alpha\nbeta\n")
    assert watcher.poll()
    assert watcher.current().term_lists["words"].matches("beta")


def test_a_reload_must_keep_the_model_categories(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "1")
    watcher = PolicyWatcher(path)
    watcher.require_categories(["hate"])
    path.write_text(POLICY.format(version="2", threshold="0.5").replace("[hate]", "[hate, x]"))
    _bump_mtime(path)
    assert not watcher.poll()
    assert watcher.current().qualified_version == "live@1"


def test_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as KEY -> ..data/KEY, ..data -> ..<timestamp>/."""
    mount = tmp_path / "mount"
    mount.mkdir()
    write_policy(mount / "..2026_01", "1")
    (mount / "..data").symlink_to("..2026_01")
    (mount / "policy.yaml").symlink_to("..data/policy.yaml")
    (mount / "words.txt").symlink_to("..data/words.txt")
    watcher = PolicyWatcher(mount / "policy.yaml")
    write_policy(mount / "..2026_02", "2", threshold="0.3")
    (mount / "..data_tmp").symlink_to("..2026_02")
    os.replace(mount / "..data_tmp", mount / "..data")  # the atomic swap kubelet does
    assert watcher.poll()
    assert watcher.current().qualified_version == "live@2"


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        PolicyWatcher(tmp_path / "missing.yaml")


def test_background_thread_reloads(tmp_path: Path) -> None:
    import time

    path = write_policy(tmp_path, "1")
    watcher = PolicyWatcher(path, interval_s=0.02).start()
    try:
        path.write_text(POLICY.format(version="3", threshold="0.5"))
        _bump_mtime(path)
        deadline = time.monotonic() + 5
        while watcher.current().version != "3" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.current().version == "3"
    finally:
        watcher.stop()
