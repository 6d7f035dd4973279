"""Fine-tuning and evaluation of fusion checkpoints (`moderator train`, `moderator eval`).

Layers, importing downwards only: dataset (rows → examples) → embedding_cache (frozen-encoder
embeddings on disk) → metrics → trainer (stage 1 head, stage 2 encoders) → report → cli.
"""
