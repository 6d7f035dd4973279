"""Model serving on Ray Serve: the Classifier deployment and its request/response types."""

from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse

__all__ = ["ModelInfo", "ScoreRequest", "ScoreResponse"]
