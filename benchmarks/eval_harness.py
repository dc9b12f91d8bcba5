"""Evaluation harness speed: the quick suite run locally and on Ray with 2 workers, and the
harness's own overhead.

Rows (each on a fresh feature cache, so every job extracts its features):

- ``direct``: ``run_job`` called in a loop, no executor (the floor);
- ``local, T threads``: ``run_jobs(executor="local")`` with torch/BLAS at T threads;
- ``ray, 2 workers``: ``run_jobs(executor="ray")`` on a local 2-CPU cluster (one thread per
  task); ``cold`` includes starting the cluster and the workers' first imports, ``warm`` is a
  second suite on the same cluster.

Then the per-job overhead of the harness itself, from no-op jobs that return a record the
size of a real one (scheduling + pickling + the atomic record write): local and Ray.

    python benchmarks/eval_harness.py                        # linear on the quick suite
    python benchmarks/eval_harness.py --protocols linear,finetune-short
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@dataclass(frozen=True)
class NoopJob:
    """A job with no work whose result is as large as a real record (n test predictions)."""

    name: str
    n: int

    @property
    def key(self) -> tuple[str, str, str]:
        return ("noop", self.name, "linear")


def run_noop(job: NoopJob) -> Any:
    """A record of ``job.n`` predictions, built without any computation."""
    from clrbench.provenance import provenance
    from clrbench.records import Record

    preds = {"y": list(range(job.n)), "pred": list(range(job.n))}
    return Record("noop", job.name, "linear", "top1", "ok", 100.0, 0.0, 1, 1, {}, {}, [[0.1, 1.0]] * 45, preds,
                  {}, {}, "", {}, provenance())


def suite(spec: str, tasks: str, protocols: list[str], executor: str, root: Path, threads: int,
          direct: bool = False, trial_cpus: float | None = None) -> tuple[float, int]:
    """Wall seconds of one suite on a fresh cache and results folder; returns (seconds, jobs)."""
    from dataclasses import replace

    from clrbench.eval.executor import run_jobs, thread_limits
    from clrbench.eval.plan import plan_jobs
    from clrbench.eval.runners import plan_trials, run_job

    shutil.rmtree(root, ignore_errors=True)
    todo, _ = plan_jobs([spec], tasks, protocols, root / "res", cache_dir=str(root / "cache"))
    t0 = time.perf_counter()
    with thread_limits(threads):
        if direct:
            for job in todo:
                run_job(job)
        else:
            trials = plan_trials(todo) if executor == "ray" else []
            if trial_cpus is not None:
                trials = [replace(t, final=replace(t.final, options={**t.final.options,
                                                                       "resources": {"num_cpus": trial_cpus}}))
                          for t in trials]
            fanned = {t.key for t in trials}  # as EvalPlan.phases does: trials beside the rest, then finals
            for phase in (trials + [j for j in todo if j.key not in fanned], [j for j in todo if j.key in fanned]):
                if phase:
                    run_jobs(phase, root / "res", executor=executor, workers=2)
    return time.perf_counter() - t0, len(todo)


def overhead(executor: str, root: Path, n_jobs: int, n_preds: int) -> float:
    """Milliseconds per no-op job through the executor (scheduling, serialisation, record write)."""
    from clrbench.eval.executor import run_jobs

    shutil.rmtree(root, ignore_errors=True)
    jobs = [NoopJob(f"t{i}", n_preds) for i in range(n_jobs)]
    run_jobs(jobs[:2], root, executor=executor, run=run_noop, workers=2)  # warm the workers
    t0 = time.perf_counter()
    run_jobs(jobs, root, executor=executor, run=run_noop, workers=2)
    return 1000 * (time.perf_counter() - t0) / n_jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="random:resnet18,width=0.25,stem=cifar")
    ap.add_argument("--tasks", default="quick")
    ap.add_argument("--protocols", default="linear")
    ap.add_argument("--repeats", type=int, default=2, help="timed suites per row (the minimum is reported)")
    ap.add_argument("--trial-cpus", type=float, default=None,
                    help="Ray: CPUs per fine-tune trial instead of the protocol file's")
    ap.add_argument("--noop-jobs", type=int, default=200)
    ap.add_argument("--noop-preds", type=int, default=2000, help="predictions per no-op record")
    ap.add_argument("--skip-2-threads", action="store_true")
    args = ap.parse_args()
    protocols = args.protocols.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="clrbench-bench-"))
    load0 = os.getloadavg()
    from clrbench.eval.executor import connect_ray

    def run(name: str, executor: str, threads: int, direct: bool = False) -> tuple[float, int]:
        return suite(args.checkpoint, args.tasks, protocols, executor, tmp / name, threads, direct, args.trial_cpus)

    run("warmup", "local", 1)  # imports and first-use costs, untimed
    configs = [("direct run_job, 1 thread", "local", 1, True), ("local executor, 1 thread", "local", 1, False)]
    if not args.skip_2_threads:
        configs.append(("local executor, 2 threads", "local", 2, False))
    t_start = time.perf_counter()
    connect_ray(None, 2)
    start = time.perf_counter() - t_start
    cold, n = run("cold", "ray", 1)
    times: dict[str, list[float]] = {name: [] for name, *_ in configs}
    times["ray, 2 workers (warm cluster)"] = []
    for _ in range(args.repeats):  # interleaved, so a change of load hits every row alike
        for name, ex, threads, direct in configs:
            times[name].append(run("x", ex, threads, direct)[0])
        times["ray, 2 workers (warm cluster)"].append(run("x", "ray", 1)[0])
    ov_local = overhead("local", tmp / "o1", args.noop_jobs, args.noop_preds)
    ov_ray = overhead("ray", tmp / "o2", args.noop_jobs, args.noop_preds)
    load1 = os.getloadavg()
    best_local = min(min(v) for k, v in times.items() if k.startswith("local"))
    print(
        f"\n{args.checkpoint}, tasks {args.tasks}, protocols {args.protocols}, "
        f"trial CPUs {args.trial_cpus or 'protocol'}; "
        f"{os.cpu_count()} CPUs; load average {load0[0]:.1f} at start, {load1[0]:.1f} at end; "
        f"Ray cluster start {start:.1f} s; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| run | jobs | wall (s), min | all runs (s) | vs best local |\n|---|---:|---:|---|---:|")
    print(f"| ray, 2 workers, cold (cluster start + first suite) | {n} | {cold + start:.1f} | {cold + start:.1f} | "
          f"{(cold + start) / best_local:.2f}x |")
    for name, vals in times.items():
        print(
            f"| {name} | {n} | {min(vals):.1f} | {', '.join(f'{v:.1f}' for v in vals)} "
            f"| {min(vals) / best_local:.2f}x |"
        )
    print(f"\nharness overhead per no-op job ({args.noop_preds} predictions per record, {args.noop_jobs} jobs): "
          f"local {ov_local:.1f} ms, ray {ov_ray:.1f} ms")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
