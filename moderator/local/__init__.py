"""Local stand-ins for production services: the embedded demo, the bench and the tests start
these. `moderator.local.stack` starts the whole local stack (broker, Redis, Ray, workers)."""

from moderator.local.broker import LocalBroker
from moderator.local.process import free_port
from moderator.local.redis_server import LocalRedis

__all__ = ["LocalBroker", "LocalRedis", "free_port"]
