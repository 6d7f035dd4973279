"""``python -m workers [--config FILE]``: run one moderation worker."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from moderator.config import load_settings
from moderator.errors import ModeratorError
from workers.main import run_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--config", help="YAML settings file; environment variables override it")
    args = parser.parse_args(argv)
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
