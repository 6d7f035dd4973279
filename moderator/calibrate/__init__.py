"""Threshold calibration from reviewers' verdicts (`moderator calibrate`, docs/calibration.md).

Verdicts are joined to the decisions they answer; per category, the decision's score and the
reviewer's judgement give precision and recall at each threshold; the lowest threshold that
reaches a target precision is written into a copy of the policy, which is then backtested.
"""

# Submodules are imported where used: curves pulls in scikit-learn, which `moderator --help`
# should not wait for.
