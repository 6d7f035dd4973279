"""Semantic banks: known-bad posts as joint image+caption vectors of the serving model.

`moderator bank import --semantic` builds one (importer.py) in the format of bank.py; the
Classifier replica loads the configured banks (serving.py) and answers, for every row of each
batch, the best similarity per bank from the embeddings already in the batch (joint.py), by
exact search or an ANN index (index.py). Policies read it as `semantic_match("name")`.
Kept import-light: moderator.config imports the settings module.
"""
