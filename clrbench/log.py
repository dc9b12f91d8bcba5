"""Logging for runs: a rank-0 filter for stdlib logging and a JSON-lines metrics file.

Non-main ranks stay quiet without monkeypatching print (the DINO/MoCo habit style.md avoids).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger("clrbench")


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


def setup_logging(rank: int = 0, level: int = logging.INFO) -> None:
    """Send clrbench's log to stderr; other ranks print warnings and errors only."""
    if not any(isinstance(f, _RankFilter) for h in logger.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_RankFilter(rank))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class MetricsWriter:
    """Appends one JSON object per line; flushed at each write so a killed run keeps its log."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the log has no duplicates."""
        if not (self.enabled and self.path.exists()):
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
        from clrbench.atomic import write_text

        write_text(self.path, "".join(k + "\n" for k in keep))
