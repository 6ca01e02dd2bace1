"""DynReach version 2 as a study: presets, resumable cells, the pilot and the confirmatory run.

The unit of work is (arm, training seed), as in version 1 (`sweep`): stage A once per seed
(gated on validation success, `train.StageGate`), stage B per arm from the same stage-A weights,
then `evaluate_v2.evaluate_arm_v2` writes one cell (JSON + safetensors, `cells`). Every cell
carries the oracle's outcomes on its own episodes and timing, so no cell depends on another.
Finished cells are never recomputed or replaced; a killed run resumes where it stopped, on any
machine and through either executor (local processes or Ray, `executors`).

Presets (docs/dynreach.md §7-9):
    v2ci     seconds: the code path, 32 px (tests, CI)
    v2quick  one seed, S1M + S1, A1 A3 A5 A6, d in {0, 3, 6}, 32 px: an illustration, no p-values
    pilot    the positive control: A3 A5 A6 A7, S1M cup, d = 3, 64 px, pilot seeds
    confirm  the pre-registered study (data/dynreach_v2/protocol.md): fresh seeds, 1,024 test
             episodes per condition, S1M and S1, d in {0, 1, 2, 3, 4, 6}

`python -m xr0lab study <preset>` runs one (see `cli.py`); `analyse` turns the cells into the
results dict the notebooks read.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xr0lab.dynreach.arms import get_arm
from xr0lab.dynreach.cells import cell_path, load_cells, write_cell
from xr0lab.dynreach.evaluate_v2 import (CONFIRM_TEST_OFFSET, PILOT_TEST_OFFSET, PRIMARY_DELAY,
                                         V2EvalSettings, band_table, evaluate_arm_v2)
from xr0lab.dynreach.policies import Tier0Config
from xr0lab.dynreach.train import TrainSettings, write_json
from xr0lab.workspace.threads import set_threads

STUDY_PRESETS = ("v2ci", "v2quick", "pilot", "confirm")
# Training seeds: version 1 used 0-4; the pilot and the confirmatory study use their own ranges,
# never shared (docs/dynreach.md §7).
PILOT_SEEDS = (900, 901, 902)
CONFIRM_SEEDS = tuple(range(1000, 1010))
PRIMARY_ARMS = ("A3", "A5")
PRIMARY_CONDITION = f"S1M|d={PRIMARY_DELAY}"


@dataclass(frozen=True)
class GateSettings:
    """Stage A trains until validation plain success at d = 0 reaches `target`, checked every
    `every` steps on `episodes` validation episodes of each training scenario, or until the
    settings' `stage_a_steps` (the stated maximum)."""

    target: float = 0.97
    every: int = 500
    episodes: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1 or self.every < 1 or self.episodes < 1:
            raise ValueError(f"GateSettings: need 0 < target <= 1, every >= 1, episodes >= 1; "
                             f"got {self}")


@dataclass(frozen=True)
class StudyConfig:
    name: str
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    model: Tier0Config = field(default_factory=lambda: Tier0Config(image_size=64,
                                                                    chunk_length=30))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        scenario=("S1M", "S1"), labels="executed", stage_a_steps=3000, stage_b_steps=500,
        checkpoint_every=250))
    eval: V2EvalSettings = field(default_factory=V2EvalSettings)
    gate: GateSettings | None = field(default_factory=GateSettings)
    benchmark: str = "v2"
    # Arms run on only their first N seeds, e.g. (("A0", 5),): the spec lets A0, A2 and A4 use
    # fewer seeds than the primary arms.
    arm_seeds: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for a in self.arms:
            get_arm(a, self.benchmark)
        if not self.seeds:
            raise ValueError("StudyConfig.seeds must hold at least one training seed")
        self.eval.check_chunk(self.model.chunk_length)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # Fields added after the pilot ran are left out at their defaults, so the pilot's run
        # directory still matches its configuration.
        if not d["arm_seeds"]:
            del d["arm_seeds"]
        if d["eval"]["control_delays"] is None:
            del d["eval"]["control_delays"]
        return d

    def cells(self) -> list[tuple[str, int]]:
        """The (arm, seed) units, arm-major (the primary arms first finish every seed)."""
        limit = dict(self.arm_seeds)
        return [(a, s) for a in self.arms for s in self.seeds[:limit.get(a, len(self.seeds))]]


def study_preset(name: str, **overrides: Any) -> StudyConfig:
    if name == "v2ci":
        cfg = StudyConfig(
            "v2ci", ("A1", "A3", "A5"), (0,), model=Tier0Config(image_size=32, chunk_length=30),
            train=TrainSettings(scenario=("S1M", "S1"), labels="executed", train_episodes=30,
                                stage_a_steps=40, stage_b_steps=20, batch_size=16,
                                stage_b_cache=512, probe_samples=200, warmup=10),
            eval=V2EvalSettings(scenario=("S1M",), delays=(0, 3), n_episodes=16,
                                conflict_episodes=16, test_offset=PILOT_TEST_OFFSET),
            gate=GateSettings(target=0.97, every=20, episodes=8))
    elif name == "v2quick":
        cfg = StudyConfig(
            "v2quick", ("A1", "A3", "A5", "A6"), (0,),
            model=Tier0Config(image_size=32, chunk_length=30),
            train=TrainSettings(scenario=("S1M", "S1"), labels="executed", train_episodes=300,
                                stage_a_steps=1000, stage_b_steps=300, stage_b_cache=8192,
                                probe_samples=1024),
            eval=V2EvalSettings(delays=(0, 3, 6), n_episodes=128, conflict_episodes=96,
                                test_offset=PILOT_TEST_OFFSET),
            gate=GateSettings(target=0.97, every=250, episodes=64))
    elif name == "pilot":
        cfg = StudyConfig(
            "pilot", ("A3", "A5", "A6", "A7"), PILOT_SEEDS,
            eval=V2EvalSettings(scenario=("S1M",), delays=(PRIMARY_DELAY,), n_episodes=512,
                                conflict_episodes=256, test_offset=PILOT_TEST_OFFSET))
    elif name == "confirm":
        # S1M at every delay; the negative control S1 at the primary delay only; A0, A2 and A4
        # (not in any primary or secondary contrast) on the first 5 seeds. About 15 core-hours.
        cfg = StudyConfig(
            "confirm", ("A3", "A5", "A1", "A6", "A7", "A3replan", "A0", "A2", "A4"),
            CONFIRM_SEEDS,
            eval=V2EvalSettings(n_episodes=1024, test_offset=CONFIRM_TEST_OFFSET,
                                control_delays=(PRIMARY_DELAY,)),
            arm_seeds=(("A0", 5), ("A2", 5), ("A4", 5)))
    else:
        raise ValueError(f"unknown study preset {name!r}; expected one of "
                         f"{', '.join(STUDY_PRESETS)}")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------- units


def validation_success(model, config: StudyConfig, episodes: int) -> dict:
    """Plain success at d = 0 (no prefix, switch at once) on `episodes` validation episodes of
    each training scenario, through the executor: the stage-A quality gate's measurement."""
    from xr0lab.dynreach.data import split_seeds
    from xr0lab.dynreach.evaluate import ArmPolicy
    from xr0lab.dynreach.evaluate_v2 import _roll, _worlds, executor_config_v2

    arm = get_arm("A1", "v2")
    seeds = split_seeds("validation", episodes)
    out = {}
    for sc in config.train.scenarios:
        plain, _ = _worlds(sc, config.model.image_size, (), seeds)
        cfg = executor_config_v2(arm, 0, config.model.chunk_length, config.eval.execution_horizon)
        _roll(ArmPolicy(model, arm, seeds), plain, [], cfg, plain.observe)
        out[sc] = float(plain.success.mean())
    out["mean"] = float(np.mean([out[sc] for sc in config.train.scenarios]))
    return out


def _gate(config: StudyConfig):
    if config.gate is None:
        return None
    gate = config.gate

    def check(model, step: int) -> tuple[bool, dict]:
        was = model.training
        model.eval()
        res = validation_success(model, config, gate.episodes)
        model.train(was)
        return res["mean"] >= gate.target, {"step": step, **res}

    return check


def stage_a_unit(run_dir: str, seed: int, config: StudyConfig, threads: int,
                 progress: bool) -> dict:
    from xr0lab.dynreach.train import train_stage_a

    set_threads(threads)
    t0 = time.perf_counter()
    train_stage_a(run_dir, seed, config.model, config.train, progress=progress,
                  gate=_gate(config), gate_every=config.gate.every if config.gate else None)
    return {"seed": seed, "seconds": time.perf_counter() - t0}


def cell_unit(run_dir: str, arm_id: str, seed: int, config: StudyConfig, threads: int,
              progress: bool) -> dict:
    from xr0lab.dynreach.sweep import cell_timings
    from xr0lab.dynreach.train import load_policy, load_stage_a, train_stage_b

    set_threads(threads)
    path = cell_path(run_dir, arm_id, seed)
    if path.exists():
        return {"arm": arm_id, "seed": seed, "seconds": 0.0, "skipped": True}
    t0 = time.perf_counter()
    arm = get_arm(arm_id, config.benchmark)
    model, ck = None, {"losses": [], "wall_s": 0.0}
    if not arm.oracle:
        train_stage_b(run_dir, seed, arm, config.model, config.train, progress=progress)
        model, ck = load_policy(run_dir, seed, arm, config.model, config.train.freq_coef)
    t_train = time.perf_counter() - t0
    result = evaluate_arm_v2(model, arm, config.eval, chunk=config.model.chunk_length,
                             image_size=config.model.image_size, progress=progress)
    _, ck_a = load_stage_a(run_dir, seed, config.model)
    result.update(cell_timings(arm_id, seed, t0, t_train, ck),
                  stage_a={k: ck_a.get(k) for k in ("steps", "gate", "wall_s", "probe")})
    write_cell(path, result)
    return {"arm": arm_id, "seed": seed, "seconds": time.perf_counter() - t0, "skipped": False}


def default_study_dir(name: str) -> Path:
    from xr0lab.workspace.paths import repo_root

    return repo_root() / "runs" / "dynreach_v2" / name


def _copy_new_cells(source: Path, target: Path) -> list[str]:
    """Copy the finished cells (`<arm>_seed<S>.{json,safetensors}`) of `source` that `target`
    lacks; a cell already in `target` is never replaced. The JSON goes last: its existence
    means the cell is complete. Returns the copied names."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for js in sorted(source.glob("*_seed*.json")):
        dest = target / js.name
        if dest.exists():
            continue
        shutil.copy2(js.with_suffix(".safetensors"), dest.with_suffix(".safetensors"))
        shutil.copy2(js, dest)
        copied.append(js.stem)
    return copied


def adopt_cells(cells_dir: Path | str, run_dir: Path | str) -> list[str]:
    """Copy the finished cells of a committed cells directory (`<arm>_seed<S>.{json,safetensors}`
    beside its `config.json`) into `run_dir/cells`, so a fresh checkout resumes instead of
    recomputing them. The two configurations must match (else `RunDirMismatch`, nothing copied);
    a cell the run directory already holds is kept, never replaced. Returns the adopted names."""
    import json

    from xr0lab.dynreach.sweep import RunDirMismatch, config_differences

    cells_dir, run_dir = Path(cells_dir), Path(run_dir)
    theirs_path, mine_path = cells_dir / "config.json", run_dir / "config.json"
    if not theirs_path.exists():
        return []
    diff = config_differences(*(json.loads(p.read_text()) for p in (theirs_path, mine_path)))
    if diff:
        raise RunDirMismatch(f"{theirs_path} belongs to another configuration than {mine_path} "
                             "(nothing was copied):\n  " + "\n  ".join(diff))
    return _copy_new_cells(cells_dir, run_dir / "cells")


def publish_cells(run_dir: Path | str, cells_dir: Path | str) -> list[str]:
    """Copy finished cells of `run_dir` that `cells_dir` lacks into it (with the run's
    config.json if it has none); a cell already there is never replaced. Returns the names."""
    import shutil

    run_dir, cells_dir = Path(run_dir), Path(cells_dir)
    cells_dir.mkdir(parents=True, exist_ok=True)
    if not (cells_dir / "config.json").exists():
        shutil.copy2(run_dir / "config.json", cells_dir / "config.json")
    return _copy_new_cells(run_dir / "cells", cells_dir)


def plan_groups(todo: Sequence[tuple[str, int]], seeds: Sequence[int], order: str = "arm",
                max_cells: int | None = None) -> list[list[tuple[str, int]]]:
    """The missing (arm, seed) cells `todo` (arm-major) as the groups a run takes in turn.

    >>> todo = [("A3", 1), ("A3", 2), ("A5", 1), ("A5", 2)]
    >>> plan_groups(todo, (1, 2))
    [[('A3', 1), ('A3', 2), ('A5', 1), ('A5', 2)]]
    >>> plan_groups(todo, (1, 2), "seed", max_cells=3)
    [[('A3', 1), ('A5', 1)], [('A3', 2)]]
    """
    if order not in ("arm", "seed"):
        raise ValueError(f"order must be 'arm' or 'seed', got {order!r}")
    todo = list(todo)
    if order == "seed":
        todo.sort(key=lambda c: list(seeds).index(c[1]))   # stable: arm order kept in a seed
    if max_cells is not None:
        todo = todo[:max_cells]
    if order == "arm":
        return [todo] if todo else []
    return [[c for c in todo if c[1] == s] for s in dict.fromkeys(s for _, s in todo)]


def run_study(config: StudyConfig, *, run_dir: Path | str | None = None, workers: int = 1,
              threads: int = 1, progress: bool = True, executor: str = "local",
              address: str | None = None, max_cells: int | None = None,
              order: str = "arm", cells_dir: Path | str | None = None) -> dict:
    """Run (or resume) the study's missing cells, then analyse every finished one; returns the
    results dict (also written to <run_dir>/results.json). Finished cells are skipped, never
    recomputed; `max_cells` stops after that many new cells.

    order "arm" runs every seed's stage A first, then the cells arm by arm; "seed" takes one
    seed at a time (its stage A, then its cells in arm order), so a sitting that stops early
    leaves whole seeds. `cells_dir` (e.g. data/dynreach_v2/confirm_cells): its cells are adopted
    before the run (`adopt_cells`) and every cell this run finishes is copied there, seed by
    seed in seed order (`publish_cells`)."""
    from xr0lab.dynreach.executors import Unit, check_executor, run_units
    from xr0lab.dynreach.sweep import check_run_config

    plan_groups([], config.seeds, order)   # checks `order` before anything is written
    check_executor(executor, address)
    run_dir = Path(run_dir or default_study_dir(config.name))
    check_run_config(run_dir, config, "study")
    if cells_dir is not None:
        adopt_cells(cells_dir, run_dir)
    t0 = time.perf_counter()
    todo = [(a, s) for a, s in config.cells() if not cell_path(run_dir, a, s).exists()]
    for group in plan_groups(todo, config.seeds, order, max_cells):
        seeds = list(dict.fromkeys(s for _, s in group))
        run_units([("stage A", [Unit(stage_a_unit, (str(run_dir), s, config, threads))
                                for s in seeds]),
                   ("cells", [Unit(cell_unit, (str(run_dir), a, s, config, threads))
                              for a, s in group])],
                  workers=workers, executor=executor, address=address, threads=threads,
                  progress=progress)
        if cells_dir is not None:
            publish_cells(run_dir, cells_dir)
    results = analyse(load_cells(run_dir, config), config,
                      meta={"wall_s": time.perf_counter() - t0, "workers": workers,
                            "threads": threads, "executor": executor})
    write_json(results, run_dir / "results.json")
    return results


# ---------------------------------------------------------------------------------- analysis

# Per-episode metrics of a condition that the analysis averages per seed (NaN-aware for ERT,
# which has no value where the oracle itself never reacts).
EPISODE_METRICS = ("success_cup", "success_plain", "ert", "rt", "reacted", "moving_at_jump",
                   "jerk", "spill_cup", "oracle_success_cup", "oracle_rt")
CONFLICT_METRICS = ("copy_fraction", "copy_fraction_late", "C_executed", "C_late",
                    "obs_following_index")


@dataclass(frozen=True)
class Contrast:
    """One pre-declared comparison: per-seed `metric` of arm `a` minus arm `b` ("oracle": the
    oracle's value on the same inputs) in `condition` ("conflict": the mechanism test)."""

    name: str
    a: str
    b: str
    condition: str
    metric: str


PRIMARY = (Contrast("primary: success (cup), A5 - A3", "A5", "A3", PRIMARY_CONDITION,
                    "success_cup"),
           Contrast("primary: ERT, A5 - A3", "A5", "A3", PRIMARY_CONDITION, "ert"))
PILOT_CONTRASTS = (
    *PRIMARY,
    *(Contrast(f"{a} copies: late copy fraction, {a} - oracle", a, "oracle", "conflict",
               "copy_fraction_late") for a in ("A3", "A5", "A6", "A7")),
    *(Contrast(f"{a} copies: late C(k), {a} - oracle", a, "oracle", "conflict", "C_late")
      for a in ("A3", "A5", "A6", "A7")),
    Contrast("A6 - A3 success (cup)", "A6", "A3", PRIMARY_CONDITION, "success_cup"),
    Contrast("A7 - A3 success (cup)", "A7", "A3", PRIMARY_CONDITION, "success_cup"),
)
# The confirmatory study's secondary family (12 contrasts, Holm over them; protocol.md).
CONFIRM_SECONDARY = (
    *(Contrast(f"{a} - A3 {label}, S1M d=3", a, "A3", PRIMARY_CONDITION, m)
      for a in ("A6", "A7", "A1") for m, label in (("success_cup", "success (cup)"),
                                                    ("ert", "ERT"))),
    # The pilot showed every learned arm, A6 included (which cannot see the prefix from these
    # indices), exceeding the oracle's late copy fraction: that excess is sluggishness, not
    # prefix use. The interventional C(k) on the late indices separates them, against A6.
    Contrast("A3 - A6 late C(k): prefix dependence beyond no access", "A3", "A6", "conflict",
             "C_late"),
    Contrast("A5 - A3 late C(k)", "A5", "A3", "conflict", "C_late"),
    Contrast("A3replan - A3 late C(k) (label control)", "A3replan", "A3", "conflict", "C_late"),
    Contrast("A5 - A3 success (cup), S1 d=3 (negative control)", "A5", "A3", "S1|d=3",
             "success_cup"),
    Contrast("A5 - A3 success (cup), S1M d=6", "A5", "A3", "S1M|d=6", "success_cup"),
    Contrast("A5 - A3 ERT, S1M d=6", "A5", "A3", "S1M|d=6", "ert"),
)
assert len(CONFIRM_SECONDARY) == 12


def _mean(x) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def per_seed_table(cells: dict, config: StudyConfig) -> dict:
    """{arm: {seed: {condition: {metric: per-seed mean}, "conflict": {...}}}}"""
    out: dict = {}
    for (arm, seed), cell in sorted(cells.items()):
        row: dict = {}
        for key, cond in cell["conditions"].items():
            row[key] = {m: _mean(cond[m]) for m in EPISODE_METRICS if m in cond}
        conf = cell["conflict"]
        row["conflict"] = {m: conf["arm"].get(m) for m in CONFLICT_METRICS}
        row["conflict"].update({f"oracle_{m}": conf["oracle"].get(m) for m in CONFLICT_METRICS})
        out.setdefault(arm, {})[str(seed)] = row
    return out


def _values(table: dict, arm: str, seeds, condition: str, metric: str) -> np.ndarray | None:
    if arm == "oracle":
        return None
    rows = table.get(arm, {})
    vals = []
    for s in seeds:
        v = rows.get(str(s), {}).get(condition, {}).get(metric)
        vals.append(np.nan if v is None else v)
    return np.asarray(vals, np.float64)


CURVE_METRICS = ("copy_fraction_k", "C_k")


def conflict_curves(cells: dict) -> dict:
    """{arm: {"k", "copy_fraction_k", "C_k", "oracle_copy_fraction_k", "oracle_C_k", ...}}: the
    mechanism test's per-index curves on the executed indices d .. s - 1, each the mean over the
    arm's seeds (NaN-aware), beside the oracle's on the same inputs. C_k is None for arms that
    run without a prefix (nothing to swap). The per-seed table keeps only pooled late values;
    the notebooks draw these curves."""
    by_arm: dict = {}
    for (arm, seed), cell in sorted(cells.items()):
        by_arm.setdefault(arm, []).append(cell["conflict"])
    out: dict = {}
    for arm, confs in by_arm.items():
        ks = {tuple(int(k) for k in c["arm"]["k"]) for c in confs}
        if len(ks) != 1:
            raise ValueError(f"conflict_curves: arm {arm}'s cells disagree on the executed "
                             f"indices k ({sorted(ks)}); they must share one timing")
        row: dict = {"k": list(ks.pop()), "delay": confs[0].get("delay"),
                     "window": confs[0].get("window"), "n_seeds": len(confs)}
        for side, prefix in (("arm", ""), ("oracle", "oracle_")):
            for m in CURVE_METRICS:
                curves = [c[side][m] for c in confs if c[side].get(m) is not None]
                if not curves:
                    row[prefix + m] = None
                    continue
                stack = np.asarray(curves, np.float64)          # (seeds, k)
                row[prefix + m] = [_mean(col) for col in stack.T]
        out[arm] = row
    return out


def evaluate_contrast(table: dict, c: Contrast, seeds) -> dict:
    """Seed-level paired test of one contrast on the seeds where both sides are finite."""
    from xr0lab.dynreach.stats import seed_level_test

    a = _values(table, c.a, seeds, c.condition, c.metric)
    if c.b == "oracle":
        b = _values(table, c.a, seeds, c.condition, f"oracle_{c.metric}")
    else:
        b = _values(table, c.b, seeds, c.condition, c.metric)
    ok = np.isfinite(a) & np.isfinite(b)
    used = [int(s) for s, k in zip(seeds, ok) if k]
    out = {"name": c.name, "a": c.a, "b": c.b, "condition": c.condition, "metric": c.metric,
           "seeds": used}
    if not used:
        out["n"] = 0
        return out
    t = seed_level_test(a[ok], b[ok])
    out.update(dataclasses.asdict(t))
    out["mean_a"], out["mean_b"] = float(a[ok].mean()), float(b[ok].mean())
    return out


def power_seeds(differences, alpha: float = 0.025, power: float = 0.8, floor: int = 10,
                cap: int = 200) -> dict:
    """Seeds needed for `power` in a two-sided paired t test at `alpha` (0.025: the smaller of
    the two Holm levels of the primary pair) for the effect the per-seed `differences` show;
    never fewer than `floor`. Returns {"effect_dz", "n_needed", "n_planned"}."""
    from scipy import stats as st

    d = np.asarray(differences, np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or d.std(ddof=1) == 0:
        return {"effect_dz": None, "n_needed": None, "n_planned": floor}
    dz = abs(float(d.mean())) / float(d.std(ddof=1))
    need = cap
    for n in range(2, cap + 1):
        crit = st.t.ppf(1 - alpha / 2, n - 1)
        nc = dz * np.sqrt(n)
        pw = st.nct.sf(crit, n - 1, nc) + st.nct.cdf(-crit, n - 1, nc)
        if pw >= power:
            need = n
            break
    return {"effect_dz": dz, "n_needed": int(need), "n_planned": int(max(need, floor))}


def _holm_family(tested: list[dict], alpha: float = 0.05) -> list[dict]:
    """Holm over a family on the sign-flip p-values (contrasts without one are left out)."""
    from xr0lab.dynreach.stats import holm

    idx = [i for i, t in enumerate(tested) if t.get("p_sign_flip") is not None]
    if idx:
        adj = holm([tested[i]["p_sign_flip"] for i in idx])
        for i, a in zip(idx, adj):
            tested[i]["p_holm"] = float(a)
            tested[i]["reject"] = bool(a <= alpha)
    return tested


def analyse(cells: dict, config: StudyConfig, *, contrasts: Sequence[Contrast] | None = None,
            meta: dict | None = None) -> dict:
    """Cells -> the results dict: per-seed table, seed-level estimates, the contrasts and the
    mechanism test's per-index curves (`conflict_curves`).

    With one seed nothing is tested (estimates only; `stats.seed_level_test` gives no p-value).
    """
    import platform
    import sys

    import torch

    import xr0lab

    seeds = sorted({s for _, s in cells})
    table = per_seed_table(cells, config)
    contrasts = PILOT_CONTRASTS if contrasts is None else contrasts
    estimates: dict = {}
    for arm, rows in table.items():
        for cond in sorted({k for r in rows.values() for k in r}):
            for m in sorted({m for r in rows.values() for m in r.get(cond, {})}):
                v = np.asarray([r.get(cond, {}).get(m, np.nan) for r in rows.values()],
                               np.float64)
                v = v[np.isfinite(v)]
                est = {"mean": float(v.mean()) if v.size else None, "n_seeds": int(v.size)}
                if v.size >= 2:
                    from scipy import stats as st

                    half = float(st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
                    est.update(low=est["mean"] - half, high=est["mean"] + half)
                estimates.setdefault(arm, {}).setdefault(cond, {})[m] = est
    tested = [evaluate_contrast(table, c, seeds) for c in contrasts]
    if config.name == "confirm" and contrasts is PILOT_CONTRASTS:
        tested = {"primary": _holm_family([evaluate_contrast(table, c, seeds) for c in PRIMARY]),
                  "secondary": _holm_family([evaluate_contrast(table, c, seeds)
                                             for c in CONFIRM_SECONDARY])}
    compute = sum(float(c.get("train_seconds", 0) + c.get("eval_seconds", 0))
                  for c in cells.values())
    stage_a: dict = {}
    for (arm, seed), c in cells.items():
        stage_a.setdefault(str(seed), c.get("stage_a"))
    compute += sum(float((v or {}).get("wall_s") or 0) for v in stage_a.values())
    return {
        "meta": {"name": config.name, "benchmark": "v2",
                 "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                              "numpy": np.__version__, "xr0lab": xr0lab.__version__,
                              "platform": platform.platform()},
                 "config": config.to_dict(), "cells": [f"{a}_seed{s}" for a, s in sorted(cells)],
                 "seeds": seeds, "compute_s": compute,
                 "band_table": band_table(config.eval.delays,
                                          execution_horizon=config.eval.execution_horizon),
                 "one_seed": len(seeds) == 1, **(meta or {})},
        "per_seed": table, "estimates": estimates, "contrasts": tested, "stage_a": stage_a,
        "conflict_curves": conflict_curves(cells),
        "stage_b": {f"{a}_seed{s}": {"wall_s": c.get("stage_b_wall_s"),
                                     "final_loss": c.get("stage_b_final_loss")}
                    for (a, s), c in sorted(cells.items())},
    }


# ------------------------------------------------------------------------------------ pilot

# The pilot's rule (docs/dynreach.md §7), fixed before the pilot ran: an arm *copies* when, on
# the executed late indices (>= p + w, d = 3), its copy fraction or its C(k) exceeds the
# oracle's on the same inputs by more than COPY_MARGIN in every pilot seed. The benchmark can
# answer the question only if the full-mask arm A3 copies.
COPY_MARGIN = 0.05
COPY_METRICS = ("copy_fraction_late", "C_late")


def pilot_verdict(results: dict, arms: Sequence[str] = ("A3", "A5", "A6", "A7")) -> dict:
    """Per arm: the per-seed excess over the oracle of each copy metric, whether it copies by
    the pilot's rule, and the seeds the primary contrasts need (`power_seeds`)."""
    table, seeds = results["per_seed"], results["meta"]["seeds"]
    out: dict = {"rule": f"excess over the oracle > {COPY_MARGIN} in every seed, on "
                         f"{' or '.join(COPY_METRICS)}", "arms": {}}
    for arm in arms:
        if arm not in table:
            continue
        row = {}
        for m in COPY_METRICS:
            a = _values(table, arm, seeds, "conflict", m)
            o = _values(table, arm, seeds, "conflict", f"oracle_{m}")
            ex = a - o
            row[m] = {"excess": [float(x) for x in ex], "mean_excess": _mean(ex),
                      "copies": bool(np.isfinite(ex).all() and (ex > COPY_MARGIN).all())}
        row["copies"] = any(row[m]["copies"] for m in COPY_METRICS)
        out["arms"][arm] = row
    out["a3_copies"] = bool(out["arms"].get("A3", {}).get("copies", False))
    power = {}
    for c in PRIMARY:
        a = _values(table, c.a, seeds, c.condition, c.metric)
        b = _values(table, c.b, seeds, c.condition, c.metric)
        if a is not None and b is not None:
            power[c.name] = power_seeds(a - b)
    out["power"] = power
    planned = [p["n_planned"] for p in power.values()] or [10]
    out["seeds_planned"] = int(max(planned))
    return out


# Chosen after the first pilot seed was seen (so exploratory wherever shown): the hard block A6
# cannot see the prefix from the late indices at all, so its excess over the oracle measures
# how sluggish a learned policy is without any prefix access; A3 - A6 isolates the prefix's part.
PILOT_EXPLORATORY = tuple(
    Contrast(f"exploratory: A3 - A6 {m}", "A3", "A6", cond, m)
    for cond, m in (("conflict", "copy_fraction_late"), ("conflict", "C_late"),
                    (PRIMARY_CONDITION, "ert"), (PRIMARY_CONDITION, "success_plain")))


def pilot_record(results: dict) -> dict:
    """What `data/dynreach_v2/pilot.json` holds: the pilot's results, its verdict, and the
    exploratory contrasts chosen after looking (`PILOT_EXPLORATORY`)."""
    seeds = results["meta"]["seeds"]
    return {**results, "verdict": pilot_verdict(results),
            "exploratory": [evaluate_contrast(results["per_seed"], c, seeds)
                            for c in PILOT_EXPLORATORY]}
