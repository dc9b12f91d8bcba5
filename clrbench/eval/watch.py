"""Follow a pretraining run and hand each new checkpoint to an evaluation, for score-vs-epoch curves.

`clrbench pretrain` writes ``runs/NAME/last.pt`` (atomically replaced every checkpoint) and,
with ``run.keep_every``, ``step_XXXXXXX.pt`` files (:mod:`clrbench.pretraining.train`). Every
checkpoint carries its ``step``, ``epoch`` and ``derived.total_steps``, so the run is
finished once a checkpoint with ``step == total_steps`` has been seen.

Because ``last.pt`` is replaced while evaluations run, each new checkpoint is first pinned by
a hard link (a copy where links are impossible) under ``SNAPSHOTS/NAME/step_XXXXXXX.pt``: the
link keeps that version's bytes even after the run replaces the file, and its name gives the
records a readable checkpoint id (``NAME-step_0000100-<sha>``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clrbench.weights.checkpoint import CheckpointError


def checkpoint_progress(spec: str) -> dict[str, Any]:
    """Where in its run a clrbench checkpoint file was written: run name, step, epoch, total steps.

    Returns:
        ``{"run", "step", "epoch", "total_steps"}``; empty for anything that is not a
        clrbench checkpoint file (``random:...``, foreign weights, unreadable files).
    """
    path = Path(spec)
    if not path.is_file() or path.suffix != ".pt":
        return {}
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not ours to judge here; the adapter reports bad files
        return {}
    if not isinstance(ckpt, dict) or ckpt.get("format") != "clrbench.checkpoint" or "step" not in ckpt:
        return {}
    run = ((ckpt.get("config") or {}).get("run") or {}).get("name") or path.parent.name
    total = (ckpt.get("derived") or {}).get("total_steps")
    epoch = ckpt.get("epoch")
    return {"run": str(run), "step": int(ckpt["step"]),
            "epoch": None if epoch is None else round(float(epoch), 4),
            "total_steps": None if total is None else int(total)}


def _pin(src: Path, tmp: Path) -> bool:
    """Hard-link (else copy) ``src`` to ``tmp``; False if ``src`` vanished meanwhile."""
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copyfile(src, tmp)
        except FileNotFoundError:
            return False
    return True


@dataclass
class RunWatcher:
    """Finds the checkpoints of ``run_dir`` not seen yet and pins them under ``snapshot_dir``.

    Attributes:
        run_dir: the pretraining run folder (``runs/NAME``).
        snapshot_dir: where pinned checkpoints go (``SNAPSHOTS/NAME/step_XXXXXXX.pt``).
        finished: a checkpoint at the run's last step has been pinned.
    """

    run_dir: Path
    snapshot_dir: Path
    finished: bool = False
    _seen_files: set[tuple[str, int, int]] = field(default_factory=set)
    _steps: set[int] = field(default_factory=set)

    def poll(self) -> list[Path]:
        """Pin and return the checkpoints written since the last call, oldest step first."""
        if not self.run_dir.is_dir():
            raise CheckpointError(f"{self.run_dir} is not a run folder (expected runs/NAME/ with last.pt).")
        found: list[tuple[int, Path]] = []
        for src in [*sorted(self.run_dir.glob("step_*.pt")), self.run_dir / "last.pt"]:
            try:
                st = src.stat()
            except FileNotFoundError:
                continue
            ident = (src.name, st.st_mtime_ns, st.st_size)
            if ident in self._seen_files:
                continue
            self._seen_files.add(ident)
            got = self._snapshot(src)
            if got is not None:
                found.append(got)
        return [p for _, p in sorted(found)]

    def _snapshot(self, src: Path) -> tuple[int, Path] | None:
        out_dir = self.snapshot_dir / self.run_dir.name
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".pin-{os.getpid()}.pt"
        if not _pin(src, tmp):
            return None
        info = checkpoint_progress(str(tmp))  # read from the pinned inode: it cannot change now
        if not info:
            _refuse(tmp, src)  # checkpoints are renamed into place whole: this one will not change
        if info["step"] in self._steps:
            tmp.unlink(missing_ok=True)
            return None
        self._steps.add(info["step"])
        dst = out_dir / f"step_{info['step']:07d}.pt"
        os.replace(tmp, dst)
        if info["total_steps"] is not None and info["step"] >= info["total_steps"]:
            self.finished = True
        return info["step"], dst


def _refuse(pinned: Path, src: Path) -> None:
    """Raise the loader's one sentence for a run-folder file that is no usable checkpoint
    (unsafe, damaged, foreign), naming the file in the run folder, not its pin."""
    from clrbench.weights.checkpoint import load_clrbench

    try:
        load_clrbench(pinned)
    except CheckpointError as e:
        raise CheckpointError(f"{str(e).replace(str(pinned), str(src))} --watch stops here.") from None
    finally:
        pinned.unlink(missing_ok=True)
    raise CheckpointError(f"{src} is not a clrbench training checkpoint (no step); --watch stops here.")


def watch_run(run_dir: Path | str, snapshot_dir: Path | str, evaluate: Callable[[list[Path]], None],
              poll_s: float = 10.0, max_idle_s: float | None = None,
              sleep: Callable[[float], None] = time.sleep) -> RunWatcher:
    """Evaluate each new checkpoint of a run until its final one has been evaluated.

    Args:
        run_dir: the pretraining run folder.
        snapshot_dir: where new checkpoints are pinned (see the module docstring).
        evaluate: called with the newly pinned checkpoint files, oldest first.
        poll_s: seconds between looks at the folder.
        max_idle_s: stop after this long without a new checkpoint (None: wait for the run's
            end or Ctrl-C).
        sleep: the waiting function (tests pass a fake clock).

    Returns:
        The watcher (``finished`` says whether the run's last checkpoint was seen).
    """
    watcher = RunWatcher(Path(run_dir), Path(snapshot_dir))
    idle = 0.0
    while True:
        new = watcher.poll()
        if new:
            idle = 0.0
            evaluate(new)
        if watcher.finished or (max_idle_s is not None and idle >= max_idle_s):
            return watcher
        sleep(poll_s)
        idle += poll_s


def clear_pins(snapshot_dir: Path | str) -> None:
    """Remove stray ``.pin-*`` files a killed watcher left behind."""
    for p in Path(snapshot_dir).glob("*/.pin-*.pt"):
        with contextlib.suppress(OSError):
            p.unlink()
