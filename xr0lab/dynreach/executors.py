"""Where the sweep's units of work run: local processes (the default) or Ray.

A unit is a function and its arguments, called as `fn(*args, progress)`; it writes its own output
(a stage-A checkpoint, a cell file) atomically and returns only a small status dict, so no
result travels back through the executor, a cell is on disk as soon as it is finished, and a
stopped sweep resumes from whatever exists. Units come in stages (stage A, then the cells):
every unit of one stage finishes before the next stage starts, because a cell trains from its
seed's stage-A checkpoint.

    local  in this process when workers == 1 (progress bars nest), else `workers` worker
           processes, spawned rather than forked (no state of this process carries over).
    ray    Ray tasks, each reserving as many CPUs as its unit uses threads:
           `ray.init(address=address)` joins a running cluster; with address None a local Ray
           is started that runs `workers` units at a time. A Ray that is already initialised
           is used as it is; Ray is shut down afterwards only when this call started it. Every
           node must have xr0lab installed and see the run directory at the same path (a
           shared file system on a cluster). Ray reruns a task whose worker died; a unit skips
           the output that exists, so a rerun repeats only what was lost.

Results do not depend on the executor: each unit seeds everything it draws from its own
arguments and sets its thread count first (`set_threads`), whichever worker runs it.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from xr0lab.workspace.frontend import progress as progress_bar

EXECUTORS = ("local", "ray")
RAY_HINT = "pip install 'xr0lab[ray]'"


@dataclass(frozen=True)
class Unit:
    """One unit of work: `fn(*args, progress)`, a module-level function (worker processes and
    Ray tasks import it by name) that writes its own output and returns a small status dict."""

    fn: Callable[..., dict]
    args: tuple


# A stage: its progress-bar label and its units, all finished before the next stage starts.
Stage = tuple[str, Sequence[Unit]]


class RayNotInstalled(ImportError):
    """executor='ray' was asked for and the ray package is not installed."""


def check_executor(executor: str, address: str | None = None) -> None:
    """Reject a bad choice before any work starts (and before a run directory is touched)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of "
                         f"{', '.join(map(repr, EXECUTORS))}")
    if address is not None and executor != "ray":
        raise ValueError(f"address={address!r} is the Ray cluster to join, so it needs "
                         f"executor='ray' (got executor={executor!r})")
    if executor == "ray":
        _import_ray()


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayNotInstalled(f"executor='ray' needs the ray package, which is not installed: "
                              f"{RAY_HINT}") from e
    return ray


def run_units(stages: Sequence[Stage], *, executor: str = "local", workers: int = 1,
              threads: int = 1, address: str | None = None, progress: bool = True) -> list[dict]:
    """Run every stage's units in order; returns their status dicts in unit order (stage by
    stage), whatever order they finished in. `threads` is the thread count each unit sets for
    itself: Ray reserves that many CPUs per task. A unit that raises stops the run with its
    error (Ray: the units not yet started are cancelled)."""
    check_executor(executor, address)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if executor == "ray":
        return _run_ray(stages, workers=workers, threads=threads, address=address,
                        progress=progress)
    if workers == 1:
        # In-process: no pickling of the config, and the units' own tqdm bars nest cleanly.
        return [unit.fn(*unit.args, progress) for desc, units in stages
                for unit in progress_bar(units, desc=desc, enabled=progress)]
    import multiprocessing as mp

    out: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for desc, units in stages:
            futs = {pool.submit(u.fn, *u.args, False): i for i, u in enumerate(units)}
            done: list[Any] = [None] * len(futs)
            for f in progress_bar(as_completed(futs), total=len(futs), desc=desc,
                                  enabled=progress):
                done[futs[f]] = f.result()
            out.extend(done)
    return out


def _call_unit(fn: Callable[..., dict], args: tuple) -> dict:
    """What a Ray task runs: the unit itself, without bars (they would interleave)."""
    return fn(*args, False)


def _run_ray(stages: Sequence[Stage], *, workers: int, threads: int, address: str | None,
             progress: bool) -> list[dict]:
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        if address is None:
            # A local Ray sized like the local pool: `workers` units at a time.
            ray.init(num_cpus=workers * threads, include_dashboard=False)
        else:
            ray.init(address=address)
    try:
        task = ray.remote(num_cpus=threads)(_call_unit)
        out: list[dict] = []
        for desc, units in stages:
            refs = {task.remote(u.fn, u.args): i for i, u in enumerate(units)}
            done: list[Any] = [None] * len(refs)
            pending = list(refs)
            bar = progress_bar(total=len(refs), desc=desc, enabled=progress)
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    for ref in ready:
                        done[refs[ref]] = ray.get(ref)
                    bar.update(len(ready))
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)
                raise
            finally:
                bar.close()
            out.extend(done)
        return out
    finally:
        if started:
            ray.shutdown()
