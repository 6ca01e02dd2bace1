"""The DynReach sweep: presets, resumable cells in worker processes, merge and statistics.

Unit of work = (arm, training seed): train stage B for the arm (or reuse the checkpoint of an arm
with the same training knobs), evaluate every condition, write one cell file
`cells/<arm>_seed<S>.pkl`. Stage A runs first, once per seed, as its own units. Every unit skips
work whose output exists, so a killed sweep resumes without losing finished cells; the merge
(`merge_results`) reads whatever cells exist and writes ONE results JSON.

Statistics (benchmark spec section 7): per (arm, condition, metric) the pooled mean with a
hierarchical bootstrap CI (seeds, then episodes); arms are compared on paired per-episode
differences (identical episodes and flow noise in every arm). Declared up front, the primary
endpoint is ERT at d = 4 in S1 cup mode for A3 - A5 and A3 - A6 (Holm over those two); every
other comparison (each arm vs A3 on ERT, cup success and spill at every delay) is a secondary
family, Holm-corrected on its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xr0lab.dynreach.evaluate import EvalSettings, evaluate_arm
from xr0lab.dynreach.models import ARMS, Tier0Config, get_arm
from xr0lab.dynreach.train import (TrainSettings, load_policy, set_threads, train_stage_a,
                                train_stage_b, write_json)

PRIMARY_CONDITION = "S1|d=4"
SCENARIO_MIX = ("S1", "S2", "S3")
PRIMARY_METRIC = "ert"
PRIMARY_PAIRS = (("A3", "A5"), ("A3", "A6"))
BOOTSTRAP_METRICS = ("success_plain", "success_cup", "ttr_plain", "ttr_cup", "rt", "ert",
                     "spill_cup", "jerk", "reacted")
SECONDARY_METRICS = ("ert", "success_cup", "spill_cup")


@dataclass(frozen=True)
class SweepConfig:
    name: str
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    model: Tier0Config = field(default_factory=Tier0Config)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    n_boot: int = 1000
    # Evaluate the checkpoints of another run directory (relative paths: to the repository
    # root) instead of training: its model and training settings must equal these.
    train_from: str | None = None

    def __post_init__(self) -> None:
        for a in self.arms:
            get_arm(a)
        if not self.seeds:
            raise ValueError("SweepConfig.seeds must hold at least one training seed")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["train_from"] is None:   # configurations written before the field existed match
            del d["train_from"]
        return d

    def checkpoint_dir(self, run_dir: Path | str) -> Path:
        """Where this sweep's stage-A/B checkpoints live: run_dir, or `train_from`."""
        if self.train_from is None:
            return Path(run_dir)
        from xr0lab.workspace.paths import repo_root

        path = Path(self.train_from)
        return path if path.is_absolute() else repo_root() / path


def sweep_preset(name: str, **overrides: Any) -> SweepConfig:
    """Named sweeps. 'ci': seconds (tests, CI notebooks); 'quick': one seed, the notebook
    setting of spec section 8 (~10 min on 2 cores); 'full': the committed S1 results;
    'scenarios': one policy per seed trained on S1-S3, evaluated in each scenario."""
    if name == "ci":
        cfg = SweepConfig(
            "ci", ("A0", "A1", "A2", "A3", "A5", "A6"), (0,),
            train=TrainSettings(train_episodes=40, stage_a_steps=60, stage_b_steps=30,
                                batch_size=32, stage_b_cache=1024, probe_samples=400),
            eval=EvalSettings(delays=(0, 4), jitter_delay=None, n_episodes=24,
                              conflict_episodes=24, attention_episodes=8), n_boot=200)
    elif name == "quick":
        cfg = SweepConfig(
            "quick", ("A0", "A1", "A2", "A3", "A5", "A6"), (0,),
            train=TrainSettings(train_episodes=300, stage_a_steps=1000, stage_b_steps=300,
                                stage_b_cache=8192, probe_samples=1024),
            eval=EvalSettings(delays=(0, 4, 6), jitter_delay=None, n_episodes=128,
                              conflict_episodes=96, attention_episodes=16), n_boot=500)
    elif name == "full":
        cfg = SweepConfig(
            "full", ("A3", "A5", "A6", "A1", "A0"), (0, 1, 2),
            train=TrainSettings(stage_a_steps=1500, stage_b_steps=500),
            eval=EvalSettings(n_episodes=512, kappa_scales=(0.5, 1.0, 2.0)), n_boot=1000)
    elif name == "early":
        # The full sweep's trained policies, evaluated in S1E: the S1 scene with the jump at
        # t_p in [6, 12], while the agent still moves toward the old goal at full speed.
        full = sweep_preset("full")
        cfg = dataclasses.replace(
            full, name="early", arms=("A3", "A5", "A6", "A1", "A0", "A2", "A4", "A7"),
            seeds=(0, 1, 2, 3, 4),
            eval=dataclasses.replace(full.eval, scenario="S1E", delays=(0, 2, 4, 6, 8),
                                     n_episodes=256),
            train_from="runs/dynreach/full")
    elif name == "scenarios":
        # Trained on S1-S3 at once and evaluated in each. S3's wall appears while the agent is
        # still moving toward the goal, so a policy that extends its committed prefix drives
        # at the wall: the setting where copying costs reaction time.
        # EXPERIMENTAL, not yet a working policy: one-seed pilots (stage A 1500 steps, B 300,
        # 96 test episodes, d = 2 and 4) reached cup success S1 18-23%, S2 1-4%, S3 1-3% on
        # this mix (goal probe R² 0.77); trained on S3 alone, 0-2% (the agent drives into the
        # wall and stays; probe R² 0.995); on S2 alone 1-4% (probe R² 0.47: the lamp-colour
        # match is not read). The tier-0 encoder at 32 px needs more capacity or data here.
        cfg = SweepConfig(
            "scenarios", ("A3", "A5", "A6", "A1", "A0"), (0, 1, 2),
            train=TrainSettings(scenario=SCENARIO_MIX, stage_a_steps=2500, stage_b_steps=500),
            eval=EvalSettings(scenario=SCENARIO_MIX, delays=(0, 2, 4, 6), n_episodes=256),
            n_boot=1000)
    else:
        raise ValueError(f"unknown sweep preset {name!r}; expected ci, quick, full, early or "
                         "scenarios")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------- running


def default_run_dir(name: str) -> Path:
    from xr0lab.workspace.paths import repo_root

    return repo_root() / "runs" / "dynreach" / name


def cell_path(run_dir: Path | str, arm: str, seed: int) -> Path:
    return Path(run_dir) / "cells" / f"{arm}_seed{seed}.pkl"


def _check_config(run_dir: Path, config: SweepConfig, on_mismatch: str = "error") -> None:
    """A run directory belongs to one configuration (arms and seeds may grow); resuming with
    another is an error, or with on_mismatch="replace" the old run directory is deleted."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    mine = json.loads(json.dumps(config.to_dict()))
    if path.exists():
        theirs = json.loads(path.read_text())
        keep = {k: v for k, v in mine.items() if k not in ("arms", "seeds")}
        if {k: v for k, v in theirs.items() if k not in ("arms", "seeds")} != keep:
            if on_mismatch != "replace":
                raise ValueError(f"{path} holds a different sweep configuration; use another "
                                 f"--run-dir or delete it (differences in: "
                                 f"{[k for k in keep if keep[k] != theirs.get(k)]})")
            import shutil

            shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
    write_json(mine, path)


def _check_train_source(config: SweepConfig, run_dir: Path) -> None:
    """A sweep that evaluates another run's checkpoints needs that run's model and training
    settings (else its checkpoints are not the policies this config describes)."""
    src = config.checkpoint_dir(run_dir)
    path = src / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"train_from={config.train_from!r}: no sweep at {src} "
                                f"(run that sweep first; expected {path})")
    theirs = json.loads(path.read_text())
    mine = json.loads(json.dumps(config.to_dict()))
    diff = [k for k in ("model", "train") if theirs.get(k) != mine[k]]
    if diff:
        raise ValueError(f"train_from={config.train_from!r}: {path} differs in {diff}")


def _stage_a_unit(run_dir: str, seed: int, config: SweepConfig, threads: int,
                  progress: bool) -> dict:
    set_threads(threads)
    t0 = time.perf_counter()
    train_stage_a(run_dir, seed, config.model, config.train, progress=progress)
    return {"seed": seed, "seconds": time.perf_counter() - t0}


def _cell_unit(run_dir: str, arm_id: str, seed: int, config: SweepConfig, threads: int,
               progress: bool) -> dict:
    set_threads(threads)
    path = cell_path(run_dir, arm_id, seed)
    if path.exists():
        return {"arm": arm_id, "seed": seed, "seconds": 0.0, "skipped": True}
    t0 = time.perf_counter()
    arm = get_arm(arm_id)
    if config.train_from is None:
        train_stage_b(run_dir, seed, arm, config.model, config.train, progress=progress)
    t_train = time.perf_counter() - t0
    model, ck = load_policy(config.checkpoint_dir(run_dir), seed, arm, config.model,
                            config.train.freq_coef)
    result = evaluate_arm(model, arm, config.eval, progress=progress)
    result.update(arm=arm_id, seed=seed, train_seconds=t_train,
                  eval_seconds=time.perf_counter() - t0 - t_train,
                  stage_b_final_loss=float(np.mean(ck["losses"][-50:])) if ck["losses"] else None,
                  stage_b_wall_s=ck["wall_s"])
    _write_cell(path, result)
    return {"arm": arm_id, "seed": seed, "seconds": time.perf_counter() - t0, "skipped": False}


def _write_cell(path: Path, cell: dict) -> None:
    """Pickle one cell atomically (a killed worker never leaves a half-written cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(cell, f)
    os.replace(tmp, path)


def run_sweep(config: SweepConfig, *, run_dir: Path | str | None = None, workers: int = 1,
              threads: int = 1, progress: bool = True, out: Path | str | None = None,
              max_cells: int | None = None, on_mismatch: str = "error") -> dict:
    """Run (or resume) the sweep and merge it; returns the results dict (also written to
    `out`, default <run_dir>/results.json). `max_cells` stops after that many new cells
    (used by the tests to simulate a killed sweep). on_mismatch="replace" discards a run
    directory left by a different configuration (notebooks use it) instead of raising."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir or default_run_dir(config.name))
    _check_config(run_dir, config, on_mismatch)
    if config.train_from is not None:
        _check_train_source(config, run_dir)
    t0 = time.perf_counter()
    set_threads(threads)
    inner = progress and workers == 1
    # Arm-major: the arms listed first (the primary contrasts) finish for every seed before
    # the next arm starts, so a sweep cut short still has complete contrasts.
    todo = [(a, s) for a in config.arms for s in config.seeds
            if not cell_path(run_dir, a, s).exists()]
    if max_cells is not None:
        todo = todo[:max_cells]
    # Stage A of the seeds still to do (none when evaluating another run's checkpoints).
    seeds = sorted({s for _, s in todo}) if config.train_from is None else []
    if workers == 1:
        # In-process: no pickling of the config, and tqdm bars nest cleanly.
        for s in tqdm(seeds, desc="stage A", disable=not progress):
            _stage_a_unit(str(run_dir), s, config, threads, inner)
        for a, s in tqdm(todo, desc="cells", disable=not progress):
            _cell_unit(str(run_dir), a, s, config, threads, inner)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = [pool.submit(_stage_a_unit, str(run_dir), s, config, threads, False)
                    for s in seeds]
            for f in tqdm(as_completed(futs), total=len(futs), desc="stage A",
                          disable=not progress):
                f.result()
            futs = [pool.submit(_cell_unit, str(run_dir), a, s, config, threads, False)
                    for a, s in todo]
            for f in tqdm(as_completed(futs), total=len(futs), desc="cells",
                          disable=not progress):
                f.result()
    backfill_moving_conflict(run_dir, config)
    results = merge_results(run_dir, config, threads=threads,
                            wall_s=time.perf_counter() - t0, workers=workers)
    write_json(results, Path(out) if out else run_dir / "results.json")
    return results


# ---------------------------------------------------------------------------------- merging


def load_cells(run_dir: Path | str, config: SweepConfig) -> dict[tuple[str, int], dict]:
    cells = {}
    for a in config.arms:
        for s in config.seeds:
            path = cell_path(run_dir, a, s)
            if path.exists():
                with open(path, "rb") as f:
                    cells[(a, s)] = pickle.load(f)
    return cells


def _est(e) -> dict:
    d = dataclasses.asdict(e)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def versions() -> dict:
    import torch

    import xr0lab

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "xr0lab": xr0lab.__version__,
            "platform": platform.platform()}


def merge_results(run_dir: Path | str, config: SweepConfig, *, threads: int = 1,
                  wall_s: float | None = None, workers: int = 1) -> dict:
    """Statistics over all finished cells -> one JSON-able results dict."""
    import torch

    from xr0lab.dynreach.stats import hierarchical_bootstrap, holm, paired_difference

    run_dir = Path(run_dir)
    cells = load_cells(run_dir, config)
    arms = [a for a in config.arms if any((a, s) in cells for s in config.seeds)]
    kappas = [k for k in config.eval.kappa_scales if k != 1.0]
    metrics = list(BOOTSTRAP_METRICS) + [f"{m}_cup_k{k:g}" for k in kappas
                                         for m in ("success", "spill")]
    nb = config.n_boot

    def stacked(arm: str, cond: str, metric: str):
        seeds = [s for s in config.seeds if (arm, s) in cells]
        vals = [np.asarray(cells[(arm, s)]["conditions"][cond][metric], np.float64)
                for s in seeds]
        labels = [np.full(len(v), s) for s, v in zip(seeds, vals)]
        return np.concatenate(vals), np.concatenate(labels), seeds

    conditions: dict[str, dict] = {}
    for a in arms:
        first = next(cells[(a, s)] for s in config.seeds if (a, s) in cells)
        conditions[a] = {}
        for cond, c0 in first["conditions"].items():
            entry: dict[str, Any] = {"delay": c0["delay"], "jitter": c0["jitter"],
                                     "prefix_length": c0["prefix_length"]}
            for m in metrics:
                if m not in c0:
                    continue
                v, lab, seeds = stacked(a, cond, m)
                entry[m] = _est(hierarchical_bootstrap(v, lab, n_boot=nb, rng_seed=0))
                entry[m]["per_seed"] = [float(np.mean(v[lab == s])) for s in seeds]
            pooled = [cells[(a, s)]["conditions"][cond]["pooled"] for s in config.seeds
                      if (a, s) in cells]
            entry["pooled"] = {k: _nanmean([p[k] for p in pooled]) for k in pooled[0]}
            entry["pooled_per_seed"] = pooled
            conditions[a][cond] = entry

    def paired(a: str, b: str, cond: str, metric: str, n_boot: int):
        va, la, sa = stacked(a, cond, metric)
        vb, lb, sb = stacked(b, cond, metric)
        if sa != sb:
            common = sorted(set(sa) & set(sb))
            keep_a, keep_b = np.isin(la, common), np.isin(lb, common)
            va, la, vb = va[keep_a], la[keep_a], vb[keep_b]
        return paired_difference(va, vb, la, n_boot=n_boot, rng_seed=1)

    primary = []
    for a, b in PRIMARY_PAIRS:
        if a in arms and b in arms and PRIMARY_CONDITION in conditions[a]:
            primary.append({"a": a, "b": b, "condition": PRIMARY_CONDITION + " cup",
                            "metric": PRIMARY_METRIC,
                            **_est(paired(a, b, PRIMARY_CONDITION, PRIMARY_METRIC,
                                          max(nb, 2000)))})
    if primary:
        for row, p in zip(primary, holm([r["p_value"] for r in primary])):
            row["p_holm"] = float(p)
    tests = []
    if "A3" in arms:
        for b in arms:
            if b == "A3":
                continue
            for cond in conditions["A3"]:
                if cond not in conditions[b]:
                    continue
                for m in SECONDARY_METRICS:
                    if not (("A3", b) in PRIMARY_PAIRS and cond == PRIMARY_CONDITION
                            and m == PRIMARY_METRIC):
                        tests.append((b, cond, m))
    # A bootstrap p-value cannot go below 1 / (n_boot + 1), and Holm multiplies the smallest by
    # the number of tests: draw enough that a clear difference can survive the correction.
    nb_secondary = max(nb, 40 * len(tests))
    secondary = [{"a": "A3", "b": b, "condition": cond, "metric": m,
                  **_est(paired("A3", b, cond, m, nb_secondary))} for b, cond, m in tests]
    if secondary:
        for row, p in zip(secondary, holm([r["p_value"] for r in secondary])):
            row["p_holm"] = float(p)

    conflict, attention, cost, examples, training = {}, {}, {}, {}, {}
    conflict_moving, conflict_wall = {}, {}
    for a in arms:
        cs = [cells[(a, s)] for s in config.seeds if (a, s) in cells]
        conflict[a] = _conflict_summary([c["conflict"] for c in cs])
        if all("conflict_moving" in c for c in cs):
            conflict_moving[a] = _conflict_summary([c["conflict_moving"] for c in cs])
        if all("conflict_wall" in c for c in cs):
            conflict_wall[a] = _conflict_summary([c["conflict_wall"] for c in cs])
        if cs[0]["attention"] is not None:
            attention[a] = {k: _nanmean_arr([c["attention"][k] for c in cs])
                            for k in cs[0]["attention"]}
        cost[a] = {k: _nanmean([c["cost"][k] for c in cs]) for k in cs[0]["cost"]}
        # The primary condition, else the first scenario's condition at the primary delay.
        conds = cs[0]["conditions"]
        at_delay = [k for k in conds if k.endswith("|" + PRIMARY_CONDITION.split("|")[1])]
        ex_cond = next((k for k in (PRIMARY_CONDITION, *at_delay) if k in conds), next(iter(conds)))
        ex = cs[0]["conditions"][ex_cond]["example"]
        examples[a] = {"condition": ex_cond, "seed": cs[0]["seed"],
                       **{k: np.asarray(v).round(5).tolist() for k, v in ex.items()}}
        training[a] = [{"seed": c["seed"], "stage_b_final_loss": c["stage_b_final_loss"],
                        "stage_b_wall_s": c["stage_b_wall_s"], "train_seconds":
                            c["train_seconds"], "eval_seconds": c["eval_seconds"]} for c in cs]
    stage_a = {}
    for s in config.seeds:
        path = config.checkpoint_dir(run_dir) / f"seed{s}" / "stage_a.pt"
        if path.exists():
            ck = torch.load(path, weights_only=False)
            stage_a[str(s)] = {"probe": ck["probe"], "wall_s": ck["wall_s"],
                               "final_loss": float(np.mean(ck["losses"][-50:]))}
    crn = _crn_check(cells, arms, config)
    return {
        "meta": {"name": config.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "versions": versions(), "threads": threads, "workers": workers,
                 "wall_s": wall_s,
                 # Compute spent in the cells and stage A, whatever runs produced them.
                 "compute_s": float(sum(c["train_seconds"] + c["eval_seconds"]
                                        for c in cells.values())
                                    + (sum(v["wall_s"] for v in stage_a.values())
                                       if config.train_from is None else 0.0)),
                 "run_dir": str(run_dir), "config": config.to_dict(),
                 "cells": sorted(f"{a}_seed{s}" for a, s in cells),
                 "primary_endpoint": f"{PRIMARY_METRIC} at {PRIMARY_CONDITION} cup, "
                                     f"pairs {PRIMARY_PAIRS}",
                 "n_boot": {"estimates": nb, "primary": max(nb, 2000),
                            "secondary": nb_secondary, "secondary_tests": len(secondary)},
                 "notes": NOTES},
        "arms": {a: dataclasses.asdict(ARMS[a]) | {"training_key": ARMS[a].training_key}
                 for a in arms},
        "conditions": conditions, "primary": primary, "secondary": secondary,
        "conflict": conflict, "conflict_moving": conflict_moving,
        **({"conflict_wall": conflict_wall} if conflict_wall else {}),
        "attention": attention, "cost": cost, "examples": examples,
        "training": training, "stage_a": stage_a, "common_random_numbers": crn,
    }


NOTES = (
    "ERT, RT and jerk are computed from the executed actions, which do not depend on cup mode "
    "(a terminated episode keeps stepping), so they are identical in cup and plain mode; cup "
    "mode changes success, time-to-reach and throughput. Prefix arms run with p = max(d, 1) "
    "(p = d + 1 on the jittered row); p = 8 at d = 8 lies outside the training range 1..6. "
    "The latency floor waits p ticks after the capturing cycle for prefix execution and, for "
    "the other arms, the delay that cycle actually drew (on the jittered row, d - 1, d or d + 1). "
    "No-prefix arms (A0-A2) fine-tune in stage B with the release causal mask. Throughput uses the executor restarting a slot's chunk "
    "on reset, computed from the episodic runs (renewal-reward count). Sync (A0) holds a zero "
    "command while inferring, which spills at every stop by construction.")


def _conflict_summary(cf: list[dict]) -> dict:
    """Conflict test and C(k) of one arm, averaged over training seeds (per-seed kept)."""
    out: dict[str, Any] = {"prefix_length": cf[0]["prefix_length"]}
    for k in ("obs_following_index", "copy_fraction", "late_distance_fresh",
              "late_distance_stale"):
        if k in cf[0]:
            out[k] = _nanmean([c[k] for c in cf])
            out[f"{k}_per_seed"] = [c[k] for c in cf]
    for k in ("cos_new", "cos_old"):
        if k in cf[0]:
            out[k] = _nanmean_arr([c[k] for c in cf])
    if "C" in cf[0]:
        out.update(C=_nanmean_arr([c["C"] for c in cf]), C_per_seed=[c["C"] for c in cf],
                   delta_prefix=_nanmean_arr([c["delta_prefix"] for c in cf]),
                   delta_obs=_nanmean_arr([c["delta_obs"] for c in cf]))
    return out


def backfill_moving_conflict(run_dir: Path | str, config: SweepConfig) -> int:
    """Add the moving-agent conflict test to cells written before it existed (loads each
    cell's stage-B checkpoint; a few seconds per cell). Returns the number of cells updated."""
    from xr0lab.dynreach.evaluate import conflict_test

    n = 0
    for (a, s), cell in load_cells(run_dir, config).items():
        if "conflict_moving" in cell:
            continue
        model, _ = load_policy(config.checkpoint_dir(run_dir), s, get_arm(a), config.model,
                               config.train.freq_coef)
        cell["conflict_moving"] = conflict_test(model, get_arm(a), config.eval, moving=True)
        _write_cell(cell_path(run_dir, a, s), cell)
        n += 1
    return n


def _crn_check(cells: dict, arms: list[str], config: SweepConfig) -> dict:
    """Did every arm see identical episode seeds and identical flow noise in every condition?

    Arms run different numbers of cycles (sync holds, async overlaps), so the noise of the
    cycles both ran is compared: by digest of the noise batches actually drawn where the cells
    recorded them ("digests"), else by the (episode, cycle) keys that name them ("keys").
    """
    same_episodes, same_noise, compared = True, True, set()
    for s in config.seeds:
        present = [a for a in arms if (a, s) in cells]
        if len(present) < 2:
            continue
        ref = cells[(present[0], s)]["conditions"]
        for a in present[1:]:
            for cond, c in cells[(a, s)]["conditions"].items():
                if cond not in ref:
                    continue
                same_episodes &= bool(np.array_equal(c["episode_seeds"],
                                                     ref[cond]["episode_seeds"]))
                field = "noise_digests" if "noise_digests" in c and \
                    "noise_digests" in ref[cond] else "noise_keys"
                compared.add("digests" if field == "noise_digests" else "keys")
                n = min(len(c[field]), len(ref[cond][field]))
                same_noise &= list(c[field][:n]) == list(ref[cond][field][:n])
    return {"same_episode_seeds": same_episodes, "same_noise": same_noise,
            "noise_compared_by": sorted(compared)}


def _nanmean(xs) -> float | None:
    xs = np.asarray([np.nan if x is None else x for x in xs], np.float64)
    if not np.isfinite(xs).any():
        return None
    return float(np.nanmean(np.where(np.isfinite(xs), xs, np.nan)))


def _nanmean_arr(xs) -> list:
    a = np.asarray(xs, np.float64)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(a, axis=0)
    return [None if not np.isfinite(x) else float(x) for x in np.atleast_1d(m)]


def load_results(path: Path | str | None = None) -> dict | None:
    """The committed full-sweep results (data/dynreach_results.json) if present, else None."""
    from xr0lab.workspace.paths import data_dir

    path = Path(path) if path else data_dir() / "dynreach_results.json"
    return json.loads(path.read_text()) if path.exists() else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m xr0lab dynreach ...")
