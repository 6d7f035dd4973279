"""The policy language: precedence, shadow/disabled/expiry semantics, located load errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from moderator.policy.engine import CompiledPolicy
from moderator.policy.errors import PolicyError
from moderator.policy.inputs import AuthorCounters, PolicyInput
from moderator.policy.loader import load_policy
from moderator.schema import Action

HEADER = """\
name: t
version: "3"
categories: [hate, weapons]
"""

RULES = (
    HEADER
    + """\
term_lists:
  spam: {terms: [free spins, casino]}
rules:
  - id: hate.block
    when: scores.hate >= 0.9
    action: block
    labels: [hate]
  - id: hate.review
    when: scores.hate >= 0.6
    action: review
    labels: [hate]
  - id: weapons.review
    when: scores.weapons >= 0.5
    action: review
    labels: [weapons]
  - id: spam.label
    when: has_term(post.caption, "spam")
    action: label
    labels: [spam, hate]
  - id: trusted.allow
    when: has(post.metadata.trusted) && post.metadata.trusted == true
    action: allow
    priority: 10
  - id: hate.shadow
    when: scores.hate >= 0.5
    action: block
    mode: shadow
  - id: weapons.old
    when: scores.weapons >= 0.1
    action: block
    mode: disabled
  - id: hate.event
    when: scores.hate >= 0.3
    action: review
    labels: [event]
    expires: 2030-01-01
"""
)
BEFORE_EXPIRY = 1_800_000_000.0  # 2027-01-15
AFTER_EXPIRY = 1_900_000_000.0  # 2030-03-17


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def policy(tmp_path: Path) -> CompiledPolicy:
    return load_policy(write(tmp_path, RULES))


def decide(policy: CompiledPolicy, now: float = AFTER_EXPIRY, **fields: object):
    scores = fields.pop("scores", {})
    return policy.decide(PolicyInput(scores=scores, **fields), now=now)  # type: ignore[arg-type]


def test_nothing_fires_gives_the_default_action(policy: CompiledPolicy) -> None:
    result = decide(policy)
    assert (result.action, result.labels, result.rules_fired, result.shadow_rules) == (
        Action.ALLOW,
        [],
        [],
        [],
    )
    assert result.policy_version == "t@3" == policy.qualified_version


@pytest.mark.parametrize(
    ("scores", "caption", "action", "labels", "fired"),
    [
        ({"hate": 0.95}, "", Action.BLOCK, ["hate"], ["hate.block", "hate.review"]),
        (
            {"hate": 0.7, "weapons": 0.6},
            "",
            Action.REVIEW,
            ["hate", "weapons"],
            ["hate.review", "weapons.review"],
        ),
        (
            {"weapons": 0.5},
            "FREE spins!",
            Action.REVIEW,
            ["weapons", "spam", "hate"],
            ["weapons.review", "spam.label"],
        ),
        ({}, "c4s1no", Action.LABEL, ["spam", "hate"], ["spam.label"]),
    ],
)
def test_most_severe_action_wins_and_labels_merge_in_rule_order(
    policy: CompiledPolicy,
    scores: dict[str, float],
    caption: str,
    action: Action,
    labels: list[str],
    fired: list[str],
) -> None:
    result = decide(policy, scores=scores, caption=caption)
    assert result.action is action
    assert result.labels == labels
    assert result.rules_fired == fired


def test_higher_priority_decides_over_severity(policy: CompiledPolicy) -> None:
    result = decide(policy, scores={"hate": 0.95}, metadata={"trusted": True})
    assert result.action is Action.ALLOW
    assert result.labels == []
    assert result.rules_fired == ["trusted.allow", "hate.block", "hate.review"]


def test_shadow_rules_are_recorded_never_enforced(policy: CompiledPolicy) -> None:
    result = decide(policy, scores={"hate": 0.55})
    assert result.action is Action.ALLOW
    assert result.shadow_rules == ["hate.shadow"]
    assert result.rules_fired == []


def test_disabled_rules_never_run_but_are_checked(policy: CompiledPolicy, tmp_path: Path) -> None:
    assert "weapons.old" not in {rule.id for rule in policy.rules}
    assert [rule.id for rule in policy.disabled] == ["weapons.old"]
    assert decide(policy, scores={"weapons": 0.2}).action is Action.ALLOW
    broken = RULES.replace("when: scores.weapons >= 0.1", "when: scores.weapon >= 0.1")
    with pytest.raises(PolicyError, match="unknown category 'weapon'"):
        load_policy(write(tmp_path, broken, "broken.yaml"))


def test_expired_rules_stop_running_at_their_instant(policy: CompiledPolicy) -> None:
    assert decide(policy, now=BEFORE_EXPIRY, scores={"hate": 0.35}).rules_fired == ["hate.event"]
    assert decide(policy, now=AFTER_EXPIRY, scores={"hate": 0.35}).rules_fired == []
    data = PolicyInput(scores={"hate": 0.35}, now=BEFORE_EXPIRY)
    assert policy.decide(data).action is Action.REVIEW


def test_errors_do_not_fire_and_are_reported(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            HEADER
            + """\
rules:
  - id: source
    when: post.metadata.source == "bot"
    action: review
  - id: either
    when: post.metadata.missing == 1 || scores.hate > 0.5
    action: label
""",
        )
    )
    result = policy.decide(PolicyInput(scores={"hate": 0.9}))
    assert result.rules_fired == ["either"]  # || absorbs the error on its left
    assert result.errors == ["source"]


def test_missing_scores_read_as_zero_and_bare_mappings_are_accepted(
    policy: CompiledPolicy,
) -> None:
    assert policy.decide({"weapons": 0.7}).rules_fired == ["weapons.review"]
    assert policy.decide({"other": 1.0}).action is Action.ALLOW


def test_author_counters_are_readable(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            HEADER
            + """\
rules:
  - id: flood
    when: author.posts_last_hour > 100 && author.id != "trusted"
    action: review
""",
        )
    )
    assert policy.uses_author
    busy = AuthorCounters(posts_last_hour=101)
    assert policy.decide(PolicyInput(scores={}, author=busy)).action is Action.REVIEW
    assert policy.decide(PolicyInput(scores={}, author=busy, author_id="trusted")).action is (
        Action.ALLOW
    )


def test_unknown_model_category_is_rejected(policy: CompiledPolicy) -> None:
    with pytest.raises(PolicyError, match="weapons"):
        policy.check_categories(["hate"])
    policy.check_categories(["hate", "weapons", "extra"])


def test_shipped_default_policy_loads() -> None:
    repo = Path(__file__).resolve().parents[2]
    policy = load_policy(repo / "policies" / "default.yaml")
    assert len(policy.rules) + len(policy.disabled) >= 30
    assert {"hate", "offensive", "weapons"} <= set(policy.categories)
    assert any(rule.mode.value == "shadow" for rule in policy.rules)
    assert policy.banks and policy.term_lists


# -- load errors: file:line:column and field -------------------------------------------------

BAD = [
    ("name: [unclosed\n", "policy.yaml:2:1: invalid YAML"),
    ("- a list\n", "policy.yaml:1:1: a policy file must be a mapping"),
    (HEADER.replace('version: "3"\n', ""), "policy.yaml:1:1: version: Field required"),
    (HEADER + "colour: red\n", "policy.yaml:4:1: colour: Extra inputs are not permitted"),
    (
        HEADER + "rules:\n  - id: a\n    when: 'true'\n    action: ban\n",
        "policy.yaml:7:5: rules.0.action: Input should be 'allow', 'label', 'review' or 'block'",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: 'true'\n    action: block\n    mode: live\n"
        "    extra: 1\n",
        "policy.yaml:9:5: rules.0.extra: Extra inputs are not permitted",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: scores.hate >\n    action: block\n",
        "policy.yaml:6:24: rules.0.when: syntax error: the expression ends too early",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: scores.hate >> 1.0\n    action: block\n",
        "policy.yaml:6:24: rules.0.when: syntax error: unexpected '>'",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: scores.hat > 0.5\n    action: block\n",
        "policy.yaml:6:18: rules.0.when: unknown category 'hat'",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: scroes.hate > 0.5\n    action: block\n",
        "policy.yaml:6:11: rules.0.when: unknown identifier 'scroes'",
    ),
    (
        HEADER + 'rules:\n  - id: a\n    when: "scores.hate > 1"\n    action: block\n',
        "policy.yaml:6:26: rules.0.when: '>' cannot compare double with int (write 1.0",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: post.caption + 1 == 'x'\n    action: block\n",
        "policy.yaml:6:11: rules.0.when: '+' cannot combine string with int",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: scores.hate\n    action: block\n",
        "policy.yaml:6:11: rules.0.when: a condition must be bool, this is double",
    ),
    (
        HEADER
        + "rules:\n  - id: a\n    when: |\n      scores.hate > 0.5\n      && author.strike > 1\n"
        "    action: block\n",
        "policy.yaml:8:17: rules.0.when: Author has no field 'strike'",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: 'true'\n    action: block\n"
        "  - id: a\n    when: 'false'\n    action: block\n",
        "policy.yaml:8:5: rules.1.id: duplicate rule id 'a' (first defined on line 5)",
    ),
    (
        HEADER + 'rules:\n  - id: a\n    when: has_term(post.caption, "nope")\n    action: block\n',
        "policy.yaml:6:34: rules.0.when: has_term(): no term list named 'nope'",
    ),
    (
        HEADER
        + 'rules:\n  - id: a\n    when: post.caption.matches("(a)\\\\1")\n    action: block\n',
        "policy.yaml:6:32: rules.0.when: matches(): invalid pattern",
    ),
    (
        HEADER
        + "rules:\n  - id: a\n    when: post.caption.matches(post.lang)\n    action: block\n",
        "rules.0.when: matches(): the pattern must be a string literal",
    ),
    (
        HEADER + 'rules:\n  - id: a\n    when: bank_match("nope")\n    action: block\n',
        "policy.yaml:6:22: rules.0.when: bank_match(): no hash bank named 'nope'",
    ),
    (
        HEADER + "term_lists:\n  t: {file: missing.txt}\n",
        "policy.yaml:5:7: term_lists.t.file: cannot read",
    ),
    (
        HEADER + "hash_banks:\n  b: {kind: pdq, file: missing.txt}\n",
        "policy.yaml:5:18: hash_banks.b.file:",
    ),
    (
        HEADER + "rules:\n  - id: a\n    when: frobnicate(1)\n    action: block\n",
        "policy.yaml:6:11: rules.0.when: unknown function 'frobnicate'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e.split(": ", 1)[-1][:40] for _, e in BAD])
def test_invalid_policies_name_file_line_column_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
rules:
  - id: a
    when: scores.nope > 0.5
    action: block
  - id: b
    when: author.nope > 1
    action: block
"""
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    assert len(caught.value.problems) == 2
    assert [p.line for p in caught.value.problems] == [6, 9]


INJECTIONS = [
    # String literals reach the generated Python only through repr().
    r'''post.caption == "\"); __import__('os').system('touch PWNED') #"''',
    r"""post.caption.startsWith("'''; __import__('os').system('touch PWNED'); '''")""",
    r'''post.caption == """\n__import__('os').system('touch PWNED')\n"""''',
]


@pytest.mark.parametrize("when", INJECTIONS)
def test_policy_text_cannot_run_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    monkeypatch.chdir(tmp_path)
    policy = load_policy(write(tmp_path, HEADER + "rules:\n" + _yaml_rule(when)))
    decide(policy, caption="\"); __import__('os').system('touch PWNED') #")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "when",
    ["__import__('os')", "post.__class__", "scores.__dict__", "exec('1')", "getattr(post, 'x')"],
)
def test_python_names_are_unknown_to_policies(tmp_path: Path, when: str) -> None:
    with pytest.raises(PolicyError):
        load_policy(write(tmp_path, HEADER + "rules:\n" + _yaml_rule(when)))


def _yaml_rule(when: str) -> str:
    return f"  - id: r\n    when: {json.dumps(when)}\n    action: block\n"


def test_the_language_imports_nothing_from_the_product_side() -> None:
    import ast

    import moderator.policy.cel as cel

    for path in Path(cel.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "moderator.policy"
            ):
                assert node.module.startswith("moderator.policy.cel"), (path.name, node.module)


def test_author_counters_are_the_fields_the_context_declares() -> None:
    from dataclasses import fields

    from moderator.policy.cel.context import AUTHOR_FIELDS

    assert tuple(f.name for f in fields(AuthorCounters)) == AUTHOR_FIELDS
