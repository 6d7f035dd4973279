"""`moderator bench`: throughput, latency and cache figures as ratios measured in one run."""
