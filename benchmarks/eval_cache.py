"""What a cache hit costs: `clrbench eval` cold, warm (features cached, no records) and no-op.

Runs the command as a user does (a fresh process each time, imports included) on one set of
checkpoints and tasks:

- ``cold``: empty cache and results folders: splits carved, images loaded, features extracted;
- ``warm``: the records deleted, the cache kept: a job whose features are cached must touch
  neither images nor weights (issue 12's target: >= 5x faster than cold);
- ``no-op``: everything recorded: plan, find nothing to do, print the board (target < 2 s).

    .venv/bin/python benchmarks/eval_cache.py --checkpoint runs/quickstart/last.pt \
        --checkpoint random:resnet18,width=0.25,stem=cifar --tasks quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "clrbench", "eval", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"clrbench eval failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", default=None)
    ap.add_argument("--tasks", default="quick")
    ap.add_argument("--repeats", type=int, default=2, help="warm and no-op runs are repeated; the minimum is shown")
    a = ap.parse_args()
    specs = a.checkpoint or ["random:resnet18,width=0.25,stem=cifar"]
    root = Path(tempfile.mkdtemp(prefix="clrbench-cache-bench-"))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    common = [x for s in specs for x in ("--checkpoint", s)] + ["--tasks", a.tasks, "--results", str(root / "res"),
                                                                 "--cache-dir", str(root / "cache")]
    try:
        cold = run(common, env)
        warm = []
        for _ in range(a.repeats):
            shutil.rmtree(root / "res")
            warm.append(run(common, env))
        noop = [run(common, env) for _ in range(a.repeats)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    w, n = min(warm), min(noop)
    print(f"checkpoints: {', '.join(specs)}; tasks: {a.tasks}; threads: {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print("| run | seconds | vs cold |")
    print("|---|---:|---:|")
    print(f"| cold (nothing cached) | {cold:.1f} | 1.00x |")
    print(f"| warm (features cached, records deleted) | {w:.1f} | {cold / w:.1f}x faster |")
    print(f"| no-op (everything recorded) | {n:.1f} | {cold / n:.1f}x faster |")


if __name__ == "__main__":
    main()
