"""The verdict consumer (`moderator verdicts`): reviewers' verdicts back into the pipeline.

Verdicts (moderator.schema.Verdict) arrive on `kafka.verdicts_topic`. Each one, once,
changes the author's strike for the post (the author state the policy reads), emits a
corrected decision when an appeal overturns an enforced decision, appends a labelled row
`moderator train` reads, and is counted in the precision metrics. docs/reviewers.md.

`plan` is pure (verdict → effects); `ledger`, `rows` and `consumer` do the effects. This
module imports nothing: moderator.config imports `settings` from here.
"""
