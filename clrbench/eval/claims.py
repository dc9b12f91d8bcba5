"""Per-job claims, so that several ``clrbench eval`` processes on one results folder share the
work instead of each running every job.

Before a job runs, the driver takes its claim: an OS lock (:mod:`clrbench.locks`) on
``RESULTS/.claims/<hash of the job>.lock``, held until the job's result is written. Another
driver that finds the claim taken moves on to the next job, and comes back to it at the end:
it then waits for the claim (the holder finishing, or dying: the OS drops the lock of a killed
process), and runs the job only if no result was written for it meanwhile. So a job is run by
one process, nothing is torn, and a dead holder's job still gets done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from clrbench.locks import try_lock, wait_lock

CLAIMS_DIR = ".claims"
OnSkip = Callable[[Any, Any], None]  # (job, the record another process wrote for it)


def claim_name(job: Any) -> str:
    """A file name naming the job: its key and, for fine-tune trials, its options."""
    options = getattr(job, "options", None) or {}
    text = repr((tuple(map(str, job.key)), sorted((str(k), repr(v)) for k, v in options.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:24] + ".lock"


class Claims:
    """The claims one driver holds on ``results_dir``; release each after writing its result."""

    def __init__(self, results_dir: Path | str, since: float | None = None) -> None:
        """``since``: when the driver looked at the records it plans around (default: now). A
        record written after it is another process's work; one written before was seen, and the
        plan chose to run its job again (``--force``)."""
        import time

        self.results_dir = Path(results_dir)
        self.root = self.results_dir / CLAIMS_DIR
        self.later: list[Any] = []
        self.skipped: set[int] = set()
        self.started = time.time() if since is None else since
        self.held: dict[int, IO[Any]] = {}

    def take(self, job: Any, wait: bool = False) -> bool:
        """Take ``job``'s claim; False when another process holds it (only when not waiting)."""
        path = self.root / claim_name(job)
        f = wait_lock(path) if wait else try_lock(path)
        if f is None:
            return False
        self.held[id(job)] = f
        return True

    def release(self, job: Any) -> None:
        f = self.held.pop(id(job), None)
        if f is not None:
            f.close()

    def release_all(self) -> None:
        for f in self.held.values():
            f.close()
        self.held.clear()

    def take_free(self, jobs: Sequence[Any], on_skip: OnSkip) -> list[Any]:
        """Claim every job nobody holds (skipping those another process has since completed);
        the held ones are kept for :meth:`take_waiting`. Returns the jobs now claimed."""
        mine = []
        for job in jobs:
            if self._take_unless_done(job, False, on_skip):
                mine.append(job)
            elif id(job) not in self.held and not self._skipped(job):
                self.later.append(job)
        return mine

    def take_waiting(self, on_skip: OnSkip) -> list[Any]:
        """Wait for each job held elsewhere; returns those still to run (now claimed)."""
        out = [job for job in self.later if self._take_unless_done(job, True, on_skip)]
        self.later = []
        return out

    def share(self, jobs: Sequence[Any], on_skip: OnSkip) -> Iterator[Any]:
        """The jobs to run here, one at a time, each claimed when yielded (the local executor:
        two processes interleave instead of one claiming everything up front)."""
        try:
            for job in jobs:
                if self._take_unless_done(job, False, on_skip):
                    yield job
                elif not self._skipped(job):
                    self.later.append(job)
            yield from self.take_waiting(on_skip)
        finally:
            self.release_all()

    def _take_unless_done(self, job: Any, wait: bool, on_skip: OnSkip) -> bool:
        if not self.take(job, wait):
            return False
        rec = self.done_elsewhere(job)
        if rec is None:
            return True
        self.release(job)
        self.skipped.add(id(job))
        on_skip(job, rec)
        return False

    def _skipped(self, job: Any) -> bool:
        return id(job) in self.skipped

    def done_elsewhere(self, job: Any) -> Any:
        """The record another process wrote for ``job`` since this driver started, else None.

        Fine-tune trial jobs have no record; their results are persisted in the cache, where
        the trial itself finds them, so they are never "done elsewhere" here.
        """
        from clrbench.records import RecordError, read_record, record_path

        if (getattr(job, "options", None) or {}).get("trial") is not None:
            return None
        try:
            path = record_path(self.results_dir, *tuple(map(str, job.key))[:3])
        except (RecordError, TypeError):
            return None
        try:
            if path.stat().st_mtime >= self.started:
                return read_record(path)
        except (OSError, RecordError):
            return None
        return None
