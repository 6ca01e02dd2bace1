"""The sweep's executors: Ray gives the same cells as local processes; bad choices are clear errors.

The Ray tests need the ray package (pyproject's `ray` extra; `bash .ci/ray-setup` installs it).
Without it they skip, except under CI=true, where they fail: CI installs it, so a missing ray
there is a broken setup. The other tests here run either way (a stand-in module plays Ray).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import types

import numpy as np
import pytest
import torch

from xr0lab.cli import main
from xr0lab.dynreach import executors
from xr0lab.dynreach.cells import cell_path, load_cells
from xr0lab.dynreach.executors import RayNotInstalled, Unit, check_executor, run_units
from xr0lab.dynreach.sweep import run_sweep, sweep_preset

_TRUE = {"1", "true", "yes"}
# Cell entries that are measured times: the only ones allowed to differ between two runs.
TIMINGS = {"train_seconds", "eval_seconds", "stage_b_wall_s", "batch_seconds_per_cycle",
           "chunk_seconds_median"}


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ray():
    try:
        import ray
    except ImportError:
        reason = "the ray package is not installed (pip install -e '.[ray]'; `bash .ci/ray-setup`)"
        if os.environ.get("CI", "").strip().lower() in _TRUE:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return ray


def start_local_ray(ray, num_cpus: int) -> None:
    """A local Ray for the test, tried twice: its raylet gives its agent processes a fixed
    window (about 15 s) to start, which a busy 2-core machine can miss."""
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False)
            return
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise


def tiny_config():
    """The ci preset cut to two arms, one seed, one delay and a few steps and episodes."""
    cfg = sweep_preset("ci")
    return dataclasses.replace(
        cfg, arms=("A1", "A3"), seeds=(0,), n_boot=20,
        train=dataclasses.replace(cfg.train, train_episodes=16, stage_a_steps=20,
                                  stage_b_steps=10, stage_b_cache=256, probe_samples=64),
        eval=dataclasses.replace(cfg.eval, delays=(0,), n_episodes=8, conflict_episodes=4,
                                 attention_episodes=2))


def _is_timing(key) -> bool:
    return isinstance(key, str) and ("seconds" in key or key == "wall_s" or key.endswith("_wall_s"))


def compare(a, b, at: str, diffs: list[str], skipped: set[str]) -> int:
    """Every entry of `a` and `b` exactly equal (same type; arrays and floats bit for bit),
    except measured times (collected in `skipped`). Appends each difference to `diffs`;
    returns how many leaves were compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            diffs.append(f"{at}: keys {sorted(map(str, set(a) ^ set(b)))} in one only")
        n = 0
        for k in sorted(set(a) & set(b), key=str):
            if _is_timing(k):
                skipped.add(k)
            else:
                n += compare(a[k], b[k], f"{at}.{k}", diffs, skipped)
        return n
    if type(a) is not type(b):
        diffs.append(f"{at}: {type(a).__name__} vs {type(b).__name__}")
        return 1
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            diffs.append(f"{at}: length {len(a)} vs {len(b)}")
            return 1
        return sum(compare(x, y, f"{at}[{i}]", diffs, skipped)
                   for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, (np.ndarray, np.generic, float)):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            diffs.append(f"{at}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}, or other bits")
    elif a != b:
        diffs.append(f"{at}: {a!r} vs {b!r}")
    return 1


def test_compare_sees_one_flipped_bit_and_skips_only_timings():
    cell = {"x": np.arange(4, dtype=np.float32), "n": [1, {"y": 0.5}], "train_seconds": 1.0}
    other = {"x": np.arange(4, dtype=np.float32), "n": [1, {"y": 0.5}], "train_seconds": 2.0}
    diffs, skipped = [], set()
    assert compare(cell, other, "", diffs, skipped) == 3 and diffs == []
    assert skipped == {"train_seconds"}
    other["x"].view(np.uint32)[2] ^= 1
    other["n"][1]["y"] = -0.5
    compare(cell, other, "", diffs, skipped)
    assert diffs == [".n[1].y: float64() vs float64(), or other bits",
                     ".x: float32(4,) vs float32(4,), or other bits"]


def test_ray_cells_equal_local_cells(ray, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")   # no usage report from the test's Ray
    config = tiny_config()
    t0 = time.perf_counter()
    local = run_sweep(config, run_dir=tmp_path / "local", workers=1, progress=False)
    t_local = time.perf_counter() - t0
    assert not ray.is_initialized()
    # Two cells at once in a local Ray (Ray's files under /tmp/ray), so each may run in either
    # worker. The sweep did not start this Ray, so it leaves it running (the stand-in tests
    # below check the Ray that a sweep starts itself).
    start_local_ray(ray, num_cpus=2)
    try:
        remote = run_sweep(config, run_dir=tmp_path / "ray", workers=2, executor="ray",
                           progress=True)
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    print(f"local {t_local:.1f} s, ray {time.perf_counter() - t0 - t_local:.1f} s")
    assert local["meta"]["cells"] == remote["meta"]["cells"] == ["A1_seed0", "A3_seed0"]
    a, b = load_cells(tmp_path / "local", config), load_cells(tmp_path / "ray", config)
    assert sorted(a) == sorted(b) == [("A1", 0), ("A3", 0)]
    for key in a:
        assert cell_path(tmp_path / "ray", *key).exists()
        diffs, skipped = [], set()
        leaves = compare(a[key], b[key], f"{key[0]}_seed{key[1]}", diffs, skipped)
        print(f"{key}: {leaves} entries equal")
        assert diffs == []
        assert skipped == TIMINGS and leaves > 60


# --------------------------------------------------------------------------- clear errors


def test_bad_executor_choices_are_errors_before_any_work(tmp_path):
    config = tiny_config()
    with pytest.raises(ValueError, match=r"^unknown executor 'dask'; expected one of 'local', "
                                         r"'ray'$"):
        run_sweep(config, run_dir=tmp_path / "a", executor="dask")
    with pytest.raises(ValueError, match=r"^address='ray://head:10001' is the Ray cluster to "
                                         r"join, so it needs executor='ray' \(got "
                                         r"executor='local'\)$"):
        run_sweep(config, run_dir=tmp_path / "b", address="ray://head:10001")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match=r"^workers must be an int >= 1, got 0$"):
        run_units([], workers=0)


def test_ray_not_installed_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` raises ImportError
    with pytest.raises(RayNotInstalled, match=r"^executor='ray' needs the ray package, which is "
                                              r"not installed: pip install 'xr0lab\[ray\]'$"):
        check_executor("ray")
    assert main(["dynreach", "ci", "--run-dir", str(tmp_path / "run"), "--executor", "ray"]) == 1
    assert capsys.readouterr().err == (
        "xr0lab dynreach ci: error: executor='ray' needs the ray package, which is not "
        "installed: pip install 'xr0lab[ray]'\n")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------- the Ray path's bookkeeping, with a stand-in


class FakeRay(types.ModuleType):
    """Plays the part of `ray` that the executor uses: tasks run when their result is asked
    for, and the newest pending task always finishes first (out of submission order)."""

    def __init__(self, initialized: bool = False):
        super().__init__("ray")
        self.initialized, self.calls, self.tasks = initialized, [], []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        self.initialized = True

    def shutdown(self):
        self.calls.append(("shutdown",))
        self.initialized = False

    def remote(self, **options):
        fake = self

        class Task:
            def remote(self, fn, args):
                fake.calls.append(("submit", options, args))
                fake.tasks.append((fn, args))
                return len(fake.tasks) - 1   # the object ref

        return lambda fn: Task()

    def wait(self, pending, num_returns):
        assert num_returns == 1
        return pending[-1:], pending[:-1]

    def get(self, ref):
        fn, args = self.tasks[ref]
        self.calls.append(("get", args))
        return executors._call_unit(fn, args)

    def cancel(self, ref):
        self.calls.append(("cancel", self.tasks[ref][1]))


def _status(name, progress):
    return {"unit": name, "progress": progress}


def _broken(name, progress):
    raise RuntimeError(f"unit {name} failed")


def test_ray_stages_run_in_order_and_a_ray_started_here_is_shut_down(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    out = run_units([("stage A", [Unit(_status, ("a0",)), Unit(_status, ("a1",))]),
                     ("cells", [Unit(_status, ("c0",))])],
                    executor="ray", workers=3, threads=2, progress=False)
    assert out == [{"unit": "a0", "progress": False}, {"unit": "a1", "progress": False},
                   {"unit": "c0", "progress": False}]
    cpus = {"num_cpus": 2}
    assert fake.calls == [
        ("init", {"num_cpus": 6, "include_dashboard": False}),
        ("submit", cpus, ("a0",)), ("submit", cpus, ("a1",)), ("get", ("a1",)), ("get", ("a0",)),
        ("submit", cpus, ("c0",)), ("get", ("c0",)),
        ("shutdown",)]


def test_ray_joins_a_cluster_or_uses_a_running_ray_and_cancels_after_a_failure(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert run_units([("cells", [Unit(_status, ("c0",))])], executor="ray",
                     address="ray://head:10001", progress=False) == [{"unit": "c0",
                                                                      "progress": False}]
    assert fake.calls[0] == ("init", {"address": "ray://head:10001"})
    assert fake.calls[-1] == ("shutdown",)
    fake = FakeRay(initialized=True)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(RuntimeError, match=r"^unit c2 failed$"):
        run_units([("cells", [Unit(_status, ("c0",)), Unit(_status, ("c1",)),
                              Unit(_broken, ("c2",))])], executor="ray", progress=False)
    assert fake.calls == [("submit", {"num_cpus": 1}, ("c0",)),
                          ("submit", {"num_cpus": 1}, ("c1",)),
                          ("submit", {"num_cpus": 1}, ("c2",)), ("get", ("c2",)),
                          ("cancel", ("c0",)), ("cancel", ("c1",))]
    assert fake.initialized, "a Ray that was running before is left running"
