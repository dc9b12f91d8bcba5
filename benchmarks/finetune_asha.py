"""Does ASHA pick what the full fine-tune grid picks? Both protocols, same checkpoint, same grid.

Writes two protocol files that differ only in how the (lr, wd) grid is searched: ``bench-grid``
(kind finetune: every trial runs ``--steps``) and ``bench-asha`` (kind finetune-asha: rungs at
steps/16, steps/4 and steps, reduction factor 4, as 1,250 / 5,000 / 20,000 are of the paper's
20,000), runs both on each task (trials two at a time on a local Ray cluster, one CPU each,
for both) and prints per task: the (lr, wd) each chose, the val and test metric of each
choice, the trial-steps each search spent, and whether the choices are the same or adjacent
grid points (|d lr index| <= 1 and |d wd index| <= 1).

    python benchmarks/finetune_asha.py --checkpoint random:resnet18,width=0.125,stem=cifar \
        --tasks quick --steps 64 --out /tmp/asha-bench
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_worker_niceness", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")

COMMON = """version: 1
steps: {steps}
batch_size: {batch}
lrs: {lrs}
wds: {wds}
wd_divided_by_lr: true
train_resize_crop: null
test_resize: null
test_crop: null
precision: fp32
checkpoint_every: {every}
seed: 0
resources: {{num_cpus: 1}}
"""


def write_protocols(out: Path, args: argparse.Namespace) -> tuple[str, str]:
    fill = dict(steps=args.steps, batch=args.batch, lrs=args.lrs, wds=args.wds, every=args.steps // 16)
    grid, fast = out / "bench-grid.yaml", out / "bench-asha.yaml"
    grid.write_text("name: bench-grid\nkind: finetune\n" + COMMON.format(**fill))
    r = args.steps // 16
    fast.write_text("name: bench-asha\nkind: finetune-asha\n" + COMMON.format(**fill)
                    + f"rungs: [{r}, {4 * r}, {16 * r}]\nreduction_factor: 4\n")
    return str(grid), str(fast)


def choice(rec: Any, proto: Any) -> tuple[int, int, float | None]:
    """(lr index, wd index, val of the chosen trial at full length) of a record."""
    lr, wd = rec.hparams["lr"], rec.hparams["wd"]
    i, j = proto.lrs.index(lr), proto.wds.index(wd)
    for r in rec.val_curve:  # grid: one entry per trial; ASHA: one per (trial, rung)
        mine = r["trial"] == f"lr{i}-wd{j}" if "trial" in r else (r["lr"], r["wd"]) == (lr, wd)
        if mine and r["steps"] == proto.steps:
            return i, j, r["val"]
    return i, j, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="random:resnet18,width=0.125,stem=cifar")
    ap.add_argument("--tasks", default="quick")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lrs", default="[1.0e-2, 3.1622776601683794e-2, 1.0e-1, 3.1622776601683794e-1]")
    ap.add_argument("--wds", default="[0.0, 1.0e-6, 1.0e-5, 1.0e-4]")
    ap.add_argument("--out", type=Path, default=Path("/tmp/clrbench-asha-bench"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.steps % 16:
        ap.error("--steps must be a multiple of 16 (rungs at steps/16, steps/4, steps).")
    args.out.mkdir(parents=True, exist_ok=True)

    from clrbench.data.cards import load_cards, select_tasks
    from clrbench.eval.executor import connect_ray, run_jobs
    from clrbench.eval.finetune import asha
    from clrbench.eval.plan import plan_jobs
    from clrbench.eval.protocols import load_protocol
    from clrbench.eval.runners import plan_trials
    from clrbench.records import read_records

    grid_p, asha_p = write_protocols(args.out, args)
    pg, pa = load_protocol(grid_p), load_protocol(asha_p)
    tasks = [c.name for c in select_tasks(args.tasks, load_cards())]
    results, cache = args.out / "results", str(args.out / "cache")
    connect_ray(None, args.workers)  # both searches share it: two trials at a time, one CPU each
    seconds = {}
    for task in tasks:
        for p in (grid_p, asha_p):
            todo, _ = plan_jobs([args.checkpoint], task, [p], results, cache_dir=cache)
            t0 = time.time()
            if todo and p == grid_p:
                run_jobs(plan_trials(todo), results, executor="ray", workers=args.workers)
            if todo:
                run_jobs(todo, results)  # grid: the final job (trials done); asha: the Tune search + final
            seconds[(task, p)] = time.time() - t0
            print(f"{task} {Path(p).stem}: {seconds[(task, p)]:.0f} s", flush=True)
    recs = {(r.task, r.protocol): r for r in read_records(results)}
    print(f"\n{args.checkpoint}, {len(pg.lrs)} x {len(pg.wds)} grid, {args.steps} steps of batch {args.batch}, "
          f"ASHA rungs {list(pa.rungs)} (reduction factor 4), fp32, 2 trials at a time")
    print("| task | grid (lr, wd) | grid val | grid test | ASHA (lr, wd) | ASHA val | ASHA test | same/adjacent "
          "| grid trial-steps | ASHA trial-steps | ratio |")
    print("|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|")
    agree = 0
    for task in tasks:
        g, a = recs.get((task, "bench-grid")), recs.get((task, "bench-asha"))
        if g is None or a is None or g.status != "ok" or a.status != "ok":
            print(f"| {task} | (missing or failed record) |")
            continue
        gi, gj, gval = choice(g, pg)
        ai, aj, aval = choice(a, pa)
        near = abs(gi - ai) <= 1 and abs(gj - aj) <= 1
        agree += near
        gsteps = len(pg.lrs) * len(pg.wds) * pg.steps
        asteps = asha.trial_steps(a.val_curve)
        same = "same" if (gi, gj) == (ai, aj) else ("adjacent" if near else "no")
        print(f"| {task} | ({pg.lrs[gi]:.3g}, {pg.wds[gj]:.3g}) | {gval:.1f} | {g.value:.1f} | "
              f"({pa.lrs[ai]:.3g}, {pa.wds[aj]:.3g}) | {aval:.1f} | {a.value:.1f} | {same} | {gsteps:,} | "
              f"{asteps:,} | {asteps / gsteps:.3f} |")
    print(f"\nsame or adjacent on {agree} of {len(tasks)} tasks; wall s: "
          + ", ".join(f"{t} {seconds.get((t, grid_p), 0):.0f}/{seconds.get((t, asha_p), 0):.0f}" for t in tasks))


if __name__ == "__main__":
    main()
