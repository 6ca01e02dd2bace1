"""The DynReach sweep: presets, resumable cells in worker processes, the command behind them.

Unit of work = (arm, training seed): train stage B for the arm (or reuse the checkpoint of an arm
with the same training knobs), evaluate every condition, write one cell file
`cells/<arm>_seed<S>.json` (`cells`). Stage A runs first, once per seed, as its own units. Every
unit skips work whose output exists, so a killed sweep resumes without losing finished cells;
the merge (`merge.merge_results`) reads whatever cells exist and writes ONE results JSON.
`run_command` is what `python -m xr0lab dynreach ...` runs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xr0lab.dynreach.arms import get_arm
from xr0lab.dynreach.cells import cell_path, write_cell
from xr0lab.dynreach.evaluate import EvalSettings, evaluate_arm
from xr0lab.dynreach.executors import Unit, check_executor, run_units
from xr0lab.dynreach.merge import backfill_moving_conflict, merge_results
from xr0lab.dynreach.policies import Tier0Config
from xr0lab.dynreach.train import (TrainSettings, load_policy, stage_b_path, train_stage_a,
                                   train_stage_b, write_json)
from xr0lab.workspace.threads import set_threads

SCENARIO_MIX = ("S1", "S2", "S3")
PRESETS = ("ci", "quick", "full", "early", "scenarios")
# The commands that make each preset's run directory (docs/dynreach.md and `dynreach --help`).
MAKES = {"full": "python -m xr0lab dynreach full --arms A3 A5 A6 A1 A0 --seeds 0 1 2 3 4 && "
                 "python -m xr0lab dynreach full --arms A2 A4 A7 A5w1 A5w2 A5w8 --seeds 0 1 2"}


class MissingRunError(FileNotFoundError):
    """A command needs the output of an earlier run that is not there; says which command
    makes it."""


class RunDirMismatch(ValueError):
    """A run directory holds a sweep with other settings; nothing in it is touched."""


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
        if d["train"]["labels"] == "replan":   # likewise: version 1 always used re-plan labels
            del d["train"]["labels"]
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
    setting of docs/dynreach.md §8 (~10 min on 2 cores); 'full': the committed S1 results;
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
        raise ValueError(f"unknown sweep preset {name!r}; expected one of {', '.join(PRESETS)}")
    # These are version 1's sweeps: re-plan chunk labels, as their committed results were made.
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, labels="replan"))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------- running


def default_run_dir(name: str) -> Path:
    from xr0lab.workspace.paths import repo_root

    return repo_root() / "runs" / "dynreach" / name


def _differences(theirs: Any, mine: Any, at: str = "") -> list[str]:
    """'setting: X there, Y here' for every leaf where two configurations differ."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        return [line for k in sorted(set(theirs) | set(mine))
                for line in _differences(theirs.get(k, "(unset)"), mine.get(k, "(unset)"),
                                         f"{at}.{k}" if at else k)]
    return [] if theirs == mine else [f"{at}: {theirs!r} there, {mine!r} here"]


def config_differences(theirs: dict, mine: dict) -> list[str]:
    """Every differing setting of two configuration dicts, arms and seeds aside (they may
    grow within one run directory)."""
    strip = lambda d: {k: v for k, v in d.items() if k not in ("arms", "seeds")}  # noqa: E731
    return _differences(strip(theirs), strip(mine))


def check_run_config(run_dir: Path, config: Any, what: str = "sweep") -> None:
    """A run directory belongs to one configuration (arms and seeds may grow). Resuming it with
    another is an error that names every differing setting; the directory is left as it is.
    `config` is a sweep's or a study's configuration (anything with `to_dict()`)."""
    path = run_dir / "config.json"
    mine = json.loads(json.dumps(config.to_dict()))
    if path.exists():
        theirs = json.loads(path.read_text())
        diff = config_differences(theirs, mine)
        if diff:
            raise RunDirMismatch(
                f"{path} holds a different {what} configuration (nothing was changed):\n  "
                + "\n  ".join(diff)
                + f"\nResume it with its own settings, or give this {what} another run "
                  f"directory (--run-dir, run_{what}(run_dir=...)).")
        # The directory's arms and seeds are those of every run made in it.
        mine["arms"] = list(dict.fromkeys([*theirs.get("arms", []), *mine["arms"]]))
        mine["seeds"] = sorted(set(theirs.get("seeds", [])) | set(mine["seeds"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(mine, path)


def _check_train_source(config: SweepConfig, run_dir: Path) -> None:
    """A sweep that evaluates another run's checkpoints needs that run's model and training
    settings (else its checkpoints are not the policies this config describes)."""
    src = config.checkpoint_dir(run_dir)
    path = src / "config.json"
    make = MAKES.get(Path(config.train_from).name,
                     f"run the sweep that trains these checkpoints with --run-dir {src}")
    if not path.exists():
        raise MissingRunError(
            f"train_from={config.train_from!r}: this sweep evaluates the checkpoints of an "
            f"earlier run, and there is no sweep at {src} (no {path.name}). Make it first: "
            f"{make}")
    theirs = json.loads(path.read_text())
    mine = json.loads(json.dumps(config.to_dict()))
    diff = [k for k in ("model", "train") if theirs.get(k) != mine[k]]
    if diff:
        raise RunDirMismatch(f"train_from={config.train_from!r}: {path} differs in {diff}:\n  "
                             + "\n  ".join(_differences({k: theirs.get(k) for k in diff},
                                                       {k: mine[k] for k in diff})))
    missing = [(a, s) for a in config.arms for s in config.seeds
               if not cell_path(run_dir, a, s).exists()
               and not stage_b_path(src, s, get_arm(a)).exists()]
    if missing:
        arms = " ".join(dict.fromkeys(a for a, _ in missing))
        seeds = " ".join(str(s) for s in sorted({s for _, s in missing}))
        raise MissingRunError(
            f"train_from={config.train_from!r}: {src} has no stage-B checkpoint for "
            f"{len(missing)} (arm, seed) pair(s): "
            + ", ".join(f"{a} seed {s}" for a, s in missing)
            + f". Train them first (python -m xr0lab dynreach {theirs.get('name', 'full')} "
              f"--arms {arms} --seeds {seeds}), or evaluate only the pairs that exist "
              "(--arms, --seeds)")


def _stage_a_unit(run_dir: str, seed: int, config: SweepConfig, threads: int,
                  progress: bool) -> dict:
    set_threads(threads)
    t0 = time.perf_counter()
    train_stage_a(run_dir, seed, config.model, config.train, progress=progress)
    return {"seed": seed, "seconds": time.perf_counter() - t0}


def cell_timings(arm_id: str, seed: int, t0: float, t_train: float, ck: dict) -> dict:
    """What every cell records besides its evaluation (v1 sweep and v2 study alike): its unit,
    training and evaluation seconds since `t0`, and the stage-B loss and wall time."""
    return dict(arm=arm_id, seed=seed, train_seconds=t_train,
                eval_seconds=time.perf_counter() - t0 - t_train,
                stage_b_final_loss=float(np.mean(ck["losses"][-50:])) if ck["losses"] else None,
                stage_b_wall_s=ck["wall_s"])


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
    result.update(cell_timings(arm_id, seed, t0, t_train, ck))
    write_cell(path, result)
    return {"arm": arm_id, "seed": seed, "seconds": time.perf_counter() - t0, "skipped": False}


def run_sweep(config: SweepConfig, *, run_dir: Path | str | None = None, workers: int = 1,
              threads: int = 1, progress: bool = True, out: Path | str | None = None,
              max_cells: int | None = None, executor: str = "local",
              address: str | None = None) -> dict:
    """Run (or resume) the sweep and merge it; returns the results dict (also written to
    `out`, default <run_dir>/results.json). `max_cells` stops after that many new cells
    (used by the tests to simulate a killed sweep). A run directory left by a different
    configuration is an error (`RunDirMismatch`), never overwritten. progress=True shows bars
    on a terminal or in JupyterLab, none in a log. executor "local" runs the units in this
    process (workers=1) or in worker processes, "ray" as Ray tasks (a local Ray, or the cluster
    at `address`); the cells are the same either way (`executors`)."""
    check_executor(executor, address)
    run_dir = Path(run_dir or default_run_dir(config.name))
    if config.train_from is not None:
        _check_train_source(config, run_dir)
    check_run_config(run_dir, config)
    t0 = time.perf_counter()
    set_threads(threads)
    # Arm-major: the arms listed first (the primary contrasts) finish for every seed before
    # the next arm starts, so a sweep cut short still has complete contrasts.
    todo = [(a, s) for a in config.arms for s in config.seeds
            if not cell_path(run_dir, a, s).exists()]
    if max_cells is not None:
        todo = todo[:max_cells]
    # Stage A of the seeds still to do (none when evaluating another run's checkpoints).
    seeds = sorted({s for _, s in todo}) if config.train_from is None else []
    run_units([("stage A", [Unit(_stage_a_unit, (str(run_dir), s, config, threads))
                            for s in seeds]),
               ("cells", [Unit(_cell_unit, (str(run_dir), a, s, config, threads))
                          for a, s in todo])],
              executor=executor, workers=workers, threads=threads, address=address,
              progress=progress)
    backfill_moving_conflict(run_dir, config)
    results = merge_results(run_dir, config, threads=threads,
                            wall_s=time.perf_counter() - t0, workers=workers)
    write_json(results, Path(out) if out else run_dir / "results.json")
    return results


# ---------------------------------------------------------------------------------- command


def run_command(mode: str, preset: str | None = None, *, arms: Sequence[str] | None = None,
                seeds: Sequence[int] | None = None, episodes: int | None = None,
                run_dir: Path | str | None = None, train_from: str | None = None,
                out: Path | str | None = None, workers: int = 1, threads: int = 1,
                progress: bool = True, executor: str = "local",
                address: str | None = None) -> tuple[dict, Path]:
    """Run (or resume) the preset named `mode`, or with mode "merge" merge the run of `preset`
    (default full) as it stands; returns (results, the JSON file written).

    arms / seeds / episodes / train_from override the preset; run_dir defaults to
    runs/dynreach/<preset> and out to <run_dir>/results.json. executor / address choose where
    the units run (`run_sweep`); merge runs none.
    """
    name = (preset or "full") if mode == "merge" else mode
    config = sweep_preset(name)
    changes: dict[str, Any] = {}
    if arms:
        changes["arms"] = tuple(arms)
    if seeds:
        changes["seeds"] = tuple(seeds)
    if episodes:
        changes["eval"] = dataclasses.replace(config.eval, n_episodes=episodes)
    if train_from:
        changes["train_from"] = train_from
    config = dataclasses.replace(config, **changes) if changes else config
    set_threads(threads)
    run_dir = Path(run_dir) if run_dir else default_run_dir(name)
    if mode == "merge":
        if not any(cell_path(run_dir, a, s).exists() for a in config.arms for s in config.seeds):
            raise MissingRunError(
                f"nothing to merge: {run_dir} has no finished cells of the {name!r} sweep's "
                f"arms and seeds. Make them first: "
                + MAKES.get(name, f"python -m xr0lab dynreach {name}"))
        backfill_moving_conflict(run_dir, config)
        results = merge_results(run_dir, config, threads=threads)
        path = Path(out) if out else run_dir / "results.json"
        write_json(results, path)
        return results, path
    results = run_sweep(config, run_dir=run_dir, workers=workers, threads=threads,
                        progress=progress, out=out, executor=executor, address=address)
    return results, Path(out) if out else run_dir / "results.json"


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m xr0lab dynreach ...")
