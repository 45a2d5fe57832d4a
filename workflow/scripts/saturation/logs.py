"""Send a job's logging, warnings and progress bars to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import sys
import warnings


def to_file(path: str):
    """Route logging and stderr (tqdm, warnings) to ``path``; returns the open stream."""
    stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives for the job
    logging.basicConfig(
        stream=stream,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    sys.stderr = stream
    return stream
