"""Logging set-up shared by the runner and the actors: our own INFO lines (camera opened, camera
failed) stay visible, chatty client libraries are held at WARNING."""

from __future__ import annotations

import logging

QUIET_LIBRARIES = ("aiokafka", "kafka", "urllib3", "httpx")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
