"""Policies: CEL rules over scores, post, author state and hash banks → an action.

`load_policy(path)` validates and compiles a policy file once; `decide(input)`
runs every rule as generated Python. The language is `moderator.policy.cel`;
see docs/policy.md.
"""

from moderator.policy.authors import AuthorStateConfig, RedisAuthorStore
from moderator.policy.engine import CompiledPolicy, PolicyResult, RuleInfo
from moderator.policy.errors import PolicyError, PolicyProblem
from moderator.policy.inputs import AuthorCounters, PolicyInput
from moderator.policy.loader import load_policy
from moderator.policy.service import PolicyService, PolicySource
from moderator.policy.watcher import PolicyWatcher

__all__ = [
    "AuthorCounters",
    "AuthorStateConfig",
    "CompiledPolicy",
    "PolicyError",
    "PolicyInput",
    "PolicyProblem",
    "PolicyResult",
    "PolicyService",
    "PolicySource",
    "PolicyWatcher",
    "RedisAuthorStore",
    "RuleInfo",
    "load_policy",
]
