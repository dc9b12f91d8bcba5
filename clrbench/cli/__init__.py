"""The ``clrbench`` command line: each command parses, builds a config, calls one library
function and renders. Heavy imports (torch, ray) happen inside the commands so that
``clrbench --help`` is instant. One module per command family; each registers on ``app``
when imported, in the order of ``clrbench --help``."""

from __future__ import annotations

import importlib
import os

from clrbench.cli.common import app, fail

for _module in ("pretrain", "evaluate", "leaderboard", "tasks", "export", "study", "distill"):
    importlib.import_module(f"clrbench.cli.{_module}")

__all__ = ["app", "fail", "main"]


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    app()
