"""Render docs/reliability.md from the figures the fault and hostile-input tests record.

Run through scripts/reliability-report.sh, which runs the tests first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults import codec_report
from tests.hostile_corpus import hostile_cases

HEADER = """# Reliability report

Regenerate with `./scripts/reliability-report.sh` (runs `pytest tests/faults`, the
hostile-input and the Kafka codec tests, then rewrites this file). Image URL fetching,
safe model loading, policy sandboxing and transport security are in
[security.md](security.md).
Figures from the last run on {machine}.

## Fault injection

Real Tansu broker, redis-server and Ray Serve with the starter model; worker processes
(`python -m workers`); ~2,000 posts per test (10% with images, half of those reposts,
1% malformed). *Lost*: valid posts without a decision at the end. *Duplicates*: decision
records beyond one per post (at-least-once re-deliveries). *Recovery*: from the fault
(or its end) to the next new decision.

| test | injects | posts | lost | duplicates | other figures |
| --- | --- | ---: | ---: | ---: | --- |
"""

HOSTILE = """
## Hostile inputs: dead-lettered or decided with problems

{count} generated kinds (tests/hostile_corpus.py), each checked by
`tests/unit/test_hostile_inputs.py` (its outcome, and a decode that allocates under
64 MiB above the record itself) and streamed through a worker on the real broker by
`tests/integration/test_hostile_stream.py` (each dead-lettered with its reason, or
decided with exactly its problems listed; committed offsets cover every record).
Hypothesis fuzzes the decoder with arbitrary bytes and arbitrary JSON posts.

Only a record that is not a post is dead-lettered: not JSON, not an object, a
`schema_version` this worker does not read, or no usable `post_id`, `author_id` or
`created_at`. A post whose parts are odd or unusable (a caption over the cap or with
hidden characters, an image that cannot be read, a key that is not its `post_id`) is
decided from what could be read, its problems listed in the decision and visible to
policies: a dead-lettered post is never moderated, so dead-lettering it would be an
evasion path. `limits.dead_letter_problems` restores dead-lettering per problem
(docs/policy.md, "Problems").

| outcome | reason code or problems | kinds |
| --- | --- | ---: |
"""


# Sections from here on are written by hand (not from figures) and survive a regeneration.
HAND_WRITTEN_FROM = "\n## Replaying dead letters"


def hand_written_tail(existing: Path) -> str:
    """The hand-written sections at the end of the current file ('' when none)."""
    if not existing.is_file():
        return ""
    text = existing.read_text()
    start = text.find(HAND_WRITTEN_FROM)
    return text[start:] if start >= 0 else ""


def render(figures: Path, machine: str) -> str:
    rows, codec_rows = codec_report.split_rows(
        json.loads(line) for line in figures.read_text().splitlines() if line.strip()
    )
    text = HEADER.format(machine=machine)
    for row in rows:
        fixed = {"test", "injects", "posts", "lost", "duplicates"}
        other = ", ".join(f"{k}={v}" for k, v in row.items() if k not in fixed)
        text += (
            f"| {row['test']} | {row['injects']} | {row['posts']} | {row['lost']} "
            f"| {row['duplicates']} | {other} |\n"
        )
    text += codec_report.render(codec_rows)
    cases = hostile_cases()
    counts: dict[tuple[str, str], int] = {}
    for case in cases:
        if case.reason is not None:
            key = ("dead-lettered", case.reason.value)
        else:
            key = ("decided", ", ".join(sorted(p.value for p in case.problems)) or "(none)")
        counts[key] = counts.get(key, 0) + 1
    text += HOSTILE.format(count=len(cases))
    for (outcome, what), count in sorted(counts.items()):
        text += f"| {outcome} | {what} | {count} |\n"
    return text


if __name__ == "__main__":
    figures_path, out_path, machine = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    out_path.write_text(render(figures_path, machine) + hand_written_tail(out_path))
    print(f"wrote {out_path}")
