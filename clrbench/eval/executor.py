"""Run jobs and write their records: in this process, or fanned out over a Ray cluster.

A *job* is any picklable object with a ``key`` (the tuple that names its record, e.g.
``(checkpoint_id, task, protocol)``), and a *run function* turns one job into one
:class:`~clrbench.records.Record` without writing it. :class:`~clrbench.eval.jobs.EvalJob`
with :func:`~clrbench.eval.runners.run_job` is the default pair; another job type (a study
point) plugs in the same way::

    run_jobs(my_jobs, results_dir, executor="ray", run=run_my_job, on_failure=my_failed_record)

``run`` must be importable by name on the workers (a module-level function), the job
picklable. What ``run`` returns is stored by ``write(results_dir, result)`` in the driver:
by default :func:`~clrbench.eval.runners.write_result`, which writes a Record as its record
file and persists a fine-tune ``TrialResult`` under the cache folder (trials are not records).
``on_failure(job, error)`` gives the failed Record to write, or None for nothing (a trial).
A job may also carry ``resources() -> dict`` (Ray requests such as
``{"num_cpus": 2}`` or ``{"num_gpus": 1}``); one CPU when it names none.

Guarantees, the same for both executors:

- Only the driver writes records, each atomically as its result arrives: a killed driver
  leaves whole records only, and rerunning the same command (which plans only the jobs
  without an ``ok`` record) runs only what is missing.
- A job that raises is recorded as ``failed`` with its error; the rest of the suite runs.
- Several drivers on one results folder share the jobs: each job is claimed before it runs
  (:mod:`clrbench.eval.claims`), so no job runs twice; a job whose claimant dies is run by
  the next driver that reaches it.
- On Ray, a job whose worker process dies is retried (``max_retries``); exceptions raised by
  the job itself are not retried, since they would raise again. Each task sets torch and
  BLAS thread counts to its CPU request before running, because Ray reuses worker processes.
- Bulky data (features, fine-tune weights) goes through the shared cache folder named in the
  job, never through the driver: only jobs and records cross the wire.

Events for progress displays are dicts ``{"job", "state", "record", "error"}`` with state
``queued`` (planned), ``running`` (handed to a worker), ``done`` or ``failed`` (result stored;
``record`` is what ``run`` returned, or the failed record, or None; ``error`` a string or None).
Jobs may share a key (the trials of one fine-tune job): displays should tell jobs apart by
identity, which the executor keeps (the driver's job objects are the ones in the events).
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from clrbench.eval.claims import Claims
from clrbench.eval.jobs import EvalError
from clrbench.records import Record

Event = dict[str, Any]  # {"job": job, "state": "queued" | "running" | "done" | "failed", "record": Record | None}
OnEvent = Callable[[Event], None]
MAX_RETRIES = 2  # Ray re-runs a job whose worker died this many times before recording it failed
CPU_BUDGET_ENV = "CLRBENCH_CPUS"  # set inside every Ray task to its CPU request (see thread_limits)


class ExecutorError(EvalError):
    """An executor that cannot run as asked (unknown name, unreachable cluster); one sentence
    (an EvalError, so the CLI reports it without a traceback)."""


class Job(Protocol):
    """What the executor needs of a job: the key naming its record (and it must pickle)."""

    @property
    def key(self) -> tuple[str, ...]:
        """The tuple naming the job's record, e.g. (checkpoint_id, task, protocol)."""
        ...


def job_resources(job: Any) -> dict[str, float]:
    """Ray resource requests of a job: its ``resources()`` if it has one (an EvalJob asks for
    what its protocol file says), with one CPU when it names none."""
    own = getattr(job, "resources", None)
    req = dict(own()) if callable(own) else {}
    req = {k: float(v) for k, v in req.items() if float(v) > 0}
    if "num_cpus" not in req:
        req["num_cpus"] = 1.0
    return req


def _is_user_error(e: BaseException) -> bool:
    """Missing data and the like: one sentence in the record, no traceback."""
    from clrbench.errors import UserError

    # A filesystem error names its path and reason; the record keeps it, no traceback needed.
    return isinstance(e, (UserError, OSError))


@contextlib.contextmanager
def thread_limits(n: int) -> Iterator[None]:
    """Limit torch intra-op threads and every BLAS/OpenMP pool (threadpoolctl) to ``n`` while
    the block runs, and restore them after: Ray reuses worker processes between jobs.

    Also sets ``$CLRBENCH_CPUS`` to ``n``: the job's CPU budget, which code sizing its own
    pools (data-loader workers) should read instead of ``os.cpu_count()``, the whole machine's.
    """
    import torch

    before = torch.get_num_threads()
    env_vars = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", CPU_BUDGET_ENV)
    env_before = {v: os.environ.get(v) for v in env_vars}
    torch.set_num_threads(n)
    os.environ.update({v: str(n) for v in env_vars})  # for pools created later (and child processes)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn ships it
        limits: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)
        for v, old in env_before.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def run_jobs(jobs: Sequence[Any], results_dir: Path | str, executor: str = "local",
             on_event: OnEvent | None = None, *, run: Callable[[Any], Any] | None = None,
             on_failure: Callable[[Any, BaseException], Record | None] | None = None,
             write: Callable[[Path, Any], Any] | None = None,
             annotate: Callable[[Any, Record], Record] | None = None,
             address: str | None = None, workers: int | None = None, since: float | None = None) -> list[Any]:
    """Run ``jobs`` with ``run`` and write each record under ``results_dir`` as it completes.

    Args:
        jobs: picklable jobs with a ``key`` (see the module docstring).
        results_dir: records go to ``results_dir/records/`` (written by this process only).
        executor: ``local`` (one after another, here) or ``ray``.
        on_event: progress callback, called in this process.
        run: job -> result (a Record, or what ``write`` stores), run here or on a Ray worker;
            default :func:`clrbench.eval.runners.run_job`.
        on_failure: (job, error) -> the failed Record, or None to store nothing; default
            :func:`clrbench.eval.runners.on_failure`.
        write: (results_dir, result) -> stores one result, in this process; default
            :func:`clrbench.eval.runners.write_result`.
        annotate: (job, record) -> record, applied here to Records before writing (e.g. the
            checkpoint's training step, known to the driver).
        address: Ray cluster to connect to (``auto``: the one running here); default: start
            a local one.
        workers: CPUs of the local Ray cluster, and at most this many jobs in flight.
        since: when the caller read the records it planned from (default: now); a record
            written after it by another process means that job is done (clrbench.eval.claims).

    Returns:
        The stored results (records, trial results), in completion order.

    Raises:
        ExecutorError: an unknown executor, or a Ray cluster that cannot be reached.
    """
    from clrbench.eval import runners

    run = run or runners.run_job
    on_failure = on_failure or runners.on_failure
    write = write or runners.write_result
    results = Path(results_dir)
    emit = on_event or (lambda ev: None)
    if executor not in ("local", "ray"):
        raise ExecutorError(f"Unknown executor {executor!r}; use local or ray.")
    for job in jobs:
        emit({"job": job, "state": "queued", "record": None, "error": None})
    stored: list[Any] = []

    def finish(job: Any, result: Any, error: BaseException | None) -> None:
        if error is not None:
            result = on_failure(job, error)
        if isinstance(result, Record) and annotate is not None:
            result = annotate(job, result)
        if result is not None:
            write(results, result)
            stored.append(result)
        claims.release(job)
        ok = error is None and getattr(result, "status", "ok") == "ok"
        msg = None if error is None else f"{type(error).__name__}: {error}"
        emit({"job": job, "state": "done" if ok else "failed", "record": result,
              "error": msg or getattr(result, "error", None)})

    # Several drivers on one results folder share the jobs (clrbench.eval.claims).
    claims = Claims(results, since)

    def skip(job: Any, rec: Any) -> None:
        emit({"job": job, "state": "done", "record": rec, "error": None})

    if executor == "local":
        for job in claims.share(jobs, skip):
            finish(job, *_run_here(job, run, emit))
    else:
        try:
            _run_ray(claims.take_free(jobs, skip), finish, run, emit, address, workers)
            rest = claims.take_waiting(skip)
            if rest:
                _run_ray(rest, finish, run, emit, address, workers)
        finally:
            claims.release_all()
    return stored


def _run_here(job: Any, run: Callable[[Any], Any], emit: OnEvent) -> tuple[Any, BaseException | None]:
    emit({"job": job, "state": "running", "record": None, "error": None})
    try:
        return run(job), None
    except Exception as e:  # recorded as failed; the suite goes on
        if not _is_user_error(e):
            traceback.print_exc()
        return None, e


def _ray_task(run: Callable[[Any], Any], job: Any, threads: int) -> Any:
    """Body of every Ray task: thread limits first (the worker process is reused), then the job."""
    with thread_limits(threads):
        return run(job)


def connect_ray(address: str | None, workers: int | None) -> Any:
    """Connect to the cluster at ``address`` or start a local one with ``workers`` CPUs, quietly.

    Returns:
        The ``ray`` module, initialised.
    """
    import logging

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local clusters: no token prompt
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning
    import ray

    if ray.is_initialized():
        return ray
    from clrbench.launch import LaunchError, check_ray_address

    try:  # ray.init retries a dead address for minutes; the launcher's check answers in seconds
        check_ray_address(address)
    except LaunchError as e:
        raise ExecutorError(str(e)) from None
    try:
        ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    except ConnectionError as e:
        raise ExecutorError(f"cannot reach a Ray cluster at {address!r} ({e}); start one with "
                            "`ray start --head`, or drop --address to start a local one.") from None
    return ray


_RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}  # request keyword -> cluster resource name


def _fits(req: dict[str, float], used: dict[str, float], total: dict[str, float]) -> bool:
    """Whether ``req`` fits beside ``used`` in the cluster's ``total`` (Ray's resource names)."""
    return all(used.get(k, 0.0) + v <= total.get(_RAY_NAMES.get(k, k), 0.0) + 1e-9 for k, v in req.items())


def _run_ray(jobs: list[Any], finish: Callable[[Any, Any, BaseException | None], None],
             run: Callable[[Any], Any], emit: OnEvent, address: str | None, workers: int | None) -> None:
    """Submit jobs while the cluster has room for their requests (so "running" means running),
    and write each record as its result arrives."""
    ray = connect_ray(address, workers)
    remote = ray.remote(_ray_task)
    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    cap = workers or len(jobs)
    queue = [(job, job_resources(job)) for job in jobs]
    for job, req in list(queue):  # a request no node can meet would wait forever: fail it now
        if not _fits(req, {}, total):
            queue.remove((job, req))
            have = ", ".join(f"{_RAY_NAMES.get(k, k)}={total.get(_RAY_NAMES.get(k, k), 0):g}" for k in req)
            finish(job, None, ExecutorError(f"the job asks for {req} but the cluster has {have}."))
    pending: dict[Any, tuple[Any, dict[str, float]]] = {}
    used: dict[str, float] = {}
    while queue or pending:
        for job, req in list(queue):
            if len(pending) >= cap or not _fits(req, used, total):
                continue
            queue.remove((job, req))
            opts = {k: v for k, v in req.items() if k in ("num_cpus", "num_gpus", "memory")}
            custom = {k: v for k, v in req.items() if k not in opts}
            ref = remote.options(max_retries=MAX_RETRIES, retry_exceptions=False, resources=custom or None,
                                 **opts).remote(run, job, max(1, int(req["num_cpus"])))
            pending[ref] = (job, req)
            used = {k: used.get(k, 0.0) + req.get(k, 0.0) for k in {*used, *req}}
            emit({"job": job, "state": "running", "record": None, "error": None})
        ready, _ = ray.wait(list(pending), num_returns=1)
        job, req = pending.pop(ready[0])
        used = {k: used.get(k, 0.0) - req.get(k, 0.0) for k in used}
        finish(job, *_result(ray, ready[0]))


def _result(ray: Any, ref: Any) -> tuple[Any, BaseException | None]:
    """The job's result, or the error it failed with (its own exception when Ray kept it)."""
    try:
        return ray.get(ref), None
    except Exception as e:  # a job that still fails after the retries
        cause = getattr(e, "cause", None)
        err = cause if isinstance(cause, BaseException) else e
        first = (str(e).splitlines() or [type(e).__name__])[0]
        if type(e).__name__ == "WorkerCrashedError" or "died" in first.lower():
            err = ExecutorError(f"the worker died {MAX_RETRIES + 1} times running this job ({first[:200]}).")
        return None, err
