"""The architecture benchmark measures the packaged starter end to end (tiny sizes)."""

from __future__ import annotations

from moderator.benchmark.architecture_bench import measure
from moderator.model.checkpoint import starter_checkpoint_dir


def test_measures_posts_per_second_and_stored_parameters() -> None:
    row = measure(starter_checkpoint_dir(), posts=4, batch=2)
    assert row["kind"] == "starter"
    assert row["stored_parameters"] > 0
    assert row["posts_per_s_from_pixels"] > 0 and row["posts_per_s_cached"] > 0
