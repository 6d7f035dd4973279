"""Policies: turn per-category scores into an action, labels and the rules that fired."""

from moderator.policy.thresholds import PolicyError, PolicyResult, ThresholdPolicy, load_policy

__all__ = ["PolicyError", "PolicyResult", "ThresholdPolicy", "load_policy"]
