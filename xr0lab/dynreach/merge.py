"""Merging a sweep: every finished cell -> one JSON-able results dict with its statistics.

Statistics (docs/dynreach.md §7): per (arm, condition, metric) the pooled mean with a
hierarchical bootstrap CI (seeds, then episodes); arms are compared on paired per-episode
differences (identical episodes and flow noise in every arm). Declared up front, the primary
endpoint is ERT at d = 4 in S1 cup mode (PRIMARY_METRIC, PRIMARY_CONDITION) for A3 - A5 and
A3 - A6 (`arms.PRIMARY_PAIRS`; Holm over those two); every other comparison (each arm vs the
reference arm A3, `arms.REFERENCE_ARM`, on ERT, cup success and spill at every delay) is a
secondary family, Holm-corrected on its own.

`merge_results` reads whatever cells exist, in named steps: per-condition estimates, the primary
and secondary families, the per-arm mechanism summaries (conflict test, C(k), attention, cost,
example trajectories, training), stage A, and the common-random-numbers check. Every bootstrap
draws from a fixed seed, so merging the same cells twice gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xr0lab.dynreach.arms import ARMS, PRIMARY_PAIRS, REFERENCE_ARM, get_arm
from xr0lab.dynreach.cells import cell_path, load_cells, write_cell
from xr0lab.dynreach.stats import hierarchical_bootstrap, holm, paired_difference

if TYPE_CHECKING:
    from xr0lab.dynreach.sweep import SweepConfig

PRIMARY_CONDITION = "S1|d=4"
PRIMARY_METRIC = "ert"
BOOTSTRAP_METRICS = ("success_plain", "success_cup", "ttr_plain", "ttr_cup", "rt", "ert",
                     "spill_cup", "jerk", "reacted")
SECONDARY_METRICS = ("ert", "success_cup", "spill_cup")

Cells = dict[tuple[str, int], dict]

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


def _shown(run_dir: Path) -> str:
    """The run directory as results record it: relative to the checkout when inside it, so
    committed results name no machine's paths."""
    from xr0lab.workspace.paths import repo_root

    try:
        return str(run_dir.resolve().relative_to(repo_root().resolve()))
    except ValueError:
        return str(run_dir)


def merge_results(run_dir: Path | str, config: SweepConfig, *, threads: int = 1,
                  wall_s: float | None = None, workers: int = 1) -> dict:
    """Statistics over all finished cells -> one JSON-able results dict."""
    run_dir = Path(run_dir)
    cells = load_cells(run_dir, config)
    arms = [a for a in config.arms if any((a, s) in cells for s in config.seeds)]
    conditions = {a: condition_estimates(cells, a, config) for a in arms}
    primary = primary_family(cells, arms, conditions, config)
    secondary, nb_secondary = secondary_family(cells, arms, conditions, config)
    summaries = arm_summaries(cells, arms, config)
    stage_a = stage_a_summaries(run_dir, config)
    meta = {"name": config.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": versions(), "threads": threads, "workers": workers,
            "wall_s": wall_s,
            # Compute spent in the cells and stage A, whatever runs produced them.
            "compute_s": float(sum(c["train_seconds"] + c["eval_seconds"]
                                   for c in cells.values())
                               + (sum(v["wall_s"] for v in stage_a.values())
                                  if config.train_from is None else 0.0)),
            "run_dir": _shown(run_dir), "config": config.to_dict(),
            "cells": sorted(f"{a}_seed{s}" for a, s in cells),
            "primary_endpoint": f"{PRIMARY_METRIC} at {PRIMARY_CONDITION} cup, "
                                f"pairs {PRIMARY_PAIRS}",
            "n_boot": {"estimates": config.n_boot, "primary": max(config.n_boot, 2000),
                       "secondary": nb_secondary, "secondary_tests": len(secondary)},
            "notes": NOTES}
    conflict_wall = summaries["conflict_wall"]
    return {
        "meta": meta,
        "arms": {a: dataclasses.asdict(ARMS[a]) | {"training_key": ARMS[a].training_key}
                 for a in arms},
        "conditions": conditions, "primary": primary, "secondary": secondary,
        "conflict": summaries["conflict"], "conflict_moving": summaries["conflict_moving"],
        **({"conflict_wall": conflict_wall} if conflict_wall else {}),
        "attention": summaries["attention"], "cost": summaries["cost"],
        "examples": summaries["examples"], "training": summaries["training"],
        "stage_a": stage_a, "common_random_numbers": _crn_check(cells, arms, config),
    }


# ------------------------------------------------------------------------ condition estimates


def bootstrap_metrics(config: SweepConfig) -> list[str]:
    """The per-episode metrics estimated in every condition (plus the extra cup worlds')."""
    kappas = [k for k in config.eval.kappa_scales if k != 1.0]
    return list(BOOTSTRAP_METRICS) + [f"{m}_cup_k{k:g}" for k in kappas
                                      for m in ("success", "spill")]


def stacked(cells: Cells, config: SweepConfig, arm: str, cond: str, metric: str):
    """(values, seed labels, seeds): one metric of one arm and condition over its seeds."""
    seeds = [s for s in config.seeds if (arm, s) in cells]
    vals = [np.asarray(cells[(arm, s)]["conditions"][cond][metric], np.float64)
            for s in seeds]
    labels = [np.full(len(v), s) for s, v in zip(seeds, vals)]
    return np.concatenate(vals), np.concatenate(labels), seeds


def condition_estimates(cells: Cells, arm: str, config: SweepConfig) -> dict[str, dict]:
    """{condition: entry} of one arm: each metric's bootstrap estimate (with per-seed means)
    and the pooled executor statistics averaged over seeds."""
    first = next(cells[(arm, s)] for s in config.seeds if (arm, s) in cells)
    metrics = bootstrap_metrics(config)
    out: dict[str, dict] = {}
    for cond, c0 in first["conditions"].items():
        entry: dict[str, Any] = {"delay": c0["delay"], "jitter": c0["jitter"],
                                 "prefix_length": c0["prefix_length"]}
        for m in metrics:
            if m not in c0:
                continue
            v, lab, seeds = stacked(cells, config, arm, cond, m)
            entry[m] = _est(hierarchical_bootstrap(v, lab, n_boot=config.n_boot, rng_seed=0))
            entry[m]["per_seed"] = [float(np.mean(v[lab == s])) for s in seeds]
        pooled = [cells[(arm, s)]["conditions"][cond]["pooled"] for s in config.seeds
                  if (arm, s) in cells]
        entry["pooled"] = {k: _nanmean([p[k] for p in pooled]) for k in pooled[0]}
        entry["pooled_per_seed"] = pooled
        out[cond] = entry
    return out


# ---------------------------------------------------------------------------- paired tests


def paired(cells: Cells, config: SweepConfig, a: str, b: str, cond: str, metric: str,
           n_boot: int):
    """Paired difference a - b of one metric in one condition, over the seeds both ran."""
    va, la, sa = stacked(cells, config, a, cond, metric)
    vb, lb, sb = stacked(cells, config, b, cond, metric)
    if sa != sb:
        common = sorted(set(sa) & set(sb))
        keep_a, keep_b = np.isin(la, common), np.isin(lb, common)
        va, la, vb = va[keep_a], la[keep_a], vb[keep_b]
    return paired_difference(va, vb, la, n_boot=n_boot, rng_seed=1)


def _holm_adjust(rows: list[dict]) -> None:
    """Add each row's Holm-adjusted p-value (over the rows given: one family) in place."""
    if rows:
        for row, p in zip(rows, holm([r["p_value"] for r in rows])):
            row["p_holm"] = float(p)


def primary_family(cells: Cells, arms: list[str], conditions: dict,
                   config: SweepConfig) -> list[dict]:
    """The declared primary endpoint for each primary pair present, Holm over the pairs."""
    primary = []
    for a, b in PRIMARY_PAIRS:
        if a in arms and b in arms and PRIMARY_CONDITION in conditions[a]:
            primary.append({"a": a, "b": b, "condition": PRIMARY_CONDITION + " cup",
                            "metric": PRIMARY_METRIC,
                            **_est(paired(cells, config, a, b, PRIMARY_CONDITION,
                                          PRIMARY_METRIC, max(config.n_boot, 2000)))})
    _holm_adjust(primary)
    return primary


def secondary_tests(arms: list[str], conditions: dict) -> list[tuple[str, str, str]]:
    """(b, condition, metric) of every reference-vs-b comparison outside the primary endpoint."""
    ref = REFERENCE_ARM
    tests = []
    if ref in arms:
        for b in arms:
            if b == ref:
                continue
            for cond in conditions[ref]:
                if cond not in conditions[b]:
                    continue
                for m in SECONDARY_METRICS:
                    if not ((ref, b) in PRIMARY_PAIRS and cond == PRIMARY_CONDITION
                            and m == PRIMARY_METRIC):
                        tests.append((b, cond, m))
    return tests


def secondary_family(cells: Cells, arms: list[str], conditions: dict,
                     config: SweepConfig) -> tuple[list[dict], int]:
    """(rows, bootstrap draws per test) of the secondary family, Holm over all its tests."""
    tests = secondary_tests(arms, conditions)
    # A bootstrap p-value cannot go below 1 / (n_boot + 1), and Holm multiplies the smallest by
    # the number of tests: draw enough that a clear difference can survive the correction.
    nb_secondary = max(config.n_boot, 40 * len(tests))
    secondary = [{"a": REFERENCE_ARM, "b": b, "condition": cond, "metric": m,
                  **_est(paired(cells, config, REFERENCE_ARM, b, cond, m, nb_secondary))}
                 for b, cond, m in tests]
    _holm_adjust(secondary)
    return secondary, nb_secondary


# ---------------------------------------------------------------------- per-arm summaries


def arm_summaries(cells: Cells, arms: list[str], config: SweepConfig) -> dict[str, dict]:
    """Per arm, averaged over its seeds: the conflict tests and C(k) ("conflict",
    "conflict_moving", "conflict_wall", the last two only where every cell has them),
    "attention", "cost", one "examples" trajectory set, and "training" records."""
    out: dict[str, dict] = {k: {} for k in ("conflict", "conflict_moving", "conflict_wall",
                                            "attention", "cost", "examples", "training")}
    for a in arms:
        cs = [cells[(a, s)] for s in config.seeds if (a, s) in cells]
        out["conflict"][a] = _conflict_summary([c["conflict"] for c in cs])
        for key in ("conflict_moving", "conflict_wall"):
            if all(key in c for c in cs):
                out[key][a] = _conflict_summary([c[key] for c in cs])
        if cs[0]["attention"] is not None:
            out["attention"][a] = {k: _nanmean_arr([c["attention"][k] for c in cs])
                                   for k in cs[0]["attention"]}
        out["cost"][a] = {k: _nanmean([c["cost"][k] for c in cs]) for k in cs[0]["cost"]}
        out["examples"][a] = _example(cs[0])
        out["training"][a] = [{"seed": c["seed"], "stage_b_final_loss": c["stage_b_final_loss"],
                               "stage_b_wall_s": c["stage_b_wall_s"], "train_seconds":
                                   c["train_seconds"], "eval_seconds": c["eval_seconds"]}
                              for c in cs]
    return out


def _example(cell: dict) -> dict:
    """The kept example trajectories of a cell: from the primary condition, else the first
    scenario's condition at the primary delay, else the first condition."""
    conds = cell["conditions"]
    at_delay = [k for k in conds if k.endswith("|" + PRIMARY_CONDITION.split("|")[1])]
    ex_cond = next((k for k in (PRIMARY_CONDITION, *at_delay) if k in conds), next(iter(conds)))
    ex = conds[ex_cond]["example"]
    return {"condition": ex_cond, "seed": cell["seed"],
            **{k: np.asarray(v).round(5).tolist() for k, v in ex.items()}}


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


def stage_a_summaries(run_dir: Path, config: SweepConfig) -> dict[str, dict]:
    """{seed: goal probe, wall time, final loss} of every stage-A checkpoint present."""
    from xr0lab.dynreach.train import read_checkpoint, stage_a_path

    stage_a = {}
    for s in config.seeds:
        path = stage_a_path(config.checkpoint_dir(run_dir), s)
        if path.exists():
            ck = read_checkpoint(path)
            stage_a[str(s)] = {"probe": ck["probe"], "wall_s": ck["wall_s"],
                               "final_loss": float(np.mean(ck["losses"][-50:]))}
    return stage_a


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


# ------------------------------------------------------------------------------- upkeep


def backfill_moving_conflict(run_dir: Path | str, config: SweepConfig) -> int:
    """Add the moving-agent conflict test to cells written before it existed (loads each
    cell's stage-B checkpoint; a few seconds per cell). Returns the number of cells updated."""
    from xr0lab.dynreach.evaluate import conflict_test
    from xr0lab.dynreach.train import load_policy

    n = 0
    for (a, s), cell in load_cells(run_dir, config).items():
        if "conflict_moving" in cell:
            continue
        model, _ = load_policy(config.checkpoint_dir(run_dir), s, get_arm(a), config.model,
                               config.train.freq_coef)
        cell["conflict_moving"] = conflict_test(model, get_arm(a), config.eval, moving=True)
        write_cell(cell_path(run_dir, a, s), cell, replace=True)   # the same cell, extended
        n += 1
    return n


def versions() -> dict:
    import torch

    import xr0lab

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "xr0lab": xr0lab.__version__,
            "platform": platform.platform()}


def _est(e) -> dict:
    d = dataclasses.asdict(e)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


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
