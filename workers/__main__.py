"""``python -m workers [--config FILE]``: run one moderation worker.

`moderator worker` runs this module with its arguments untouched: this parser is the only
one that reads them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from moderator.config import load_settings
from moderator.errors import ModeratorError
from workers.main import run_worker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line (also `moderator worker`'s)."""
    parser = argparse.ArgumentParser(
        prog="python -m workers", description="Run one moderation worker."
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        help="YAML settings file; MODERATOR_* environment variables override it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
        run_worker(settings, threading.Event())
    except ModeratorError as exc:
        logging.getLogger("workers").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
