"""Staged training of the tier-0 DynReach policies (docs/dynreach.md §4).

Stage A (once per training seed): encoder + DiT from scratch, no prefix, release causal mask.
Stage B (per arm, from the same stage-A weights): only the DiT (and its projectors) train; the
encoder is frozen and its token features are computed once and cached, so every arm sees exactly
the same context. Arms with the same training knobs share one stage-B checkpoint
(`Arm.training_key`); no-prefix arms get the same number of steps as prefix arms (matched
compute).

Layout under a run directory (default runs/dynreach/<name>); every checkpoint is a pair, its
tensors in `<name>.safetensors` and the rest (config, settings, arm, losses, wall time, probe,
seed, step, optimizer hyperparameters) in `<name>.json`, written last, so the JSON's existence
means the checkpoint is complete (format: `store`; nothing is ever unpickled):
    seed{S}/stage_a.{json,safetensors}                 final stage-A weights (+ losses, probe,
                                                       wall time)
    seed{S}/stage_b_{training_key}.{json,safetensors}  final stage-B weights
    *.partial.{json,safetensors}                       periodic checkpoints (weights, AdamW
                                                       state, step); a rerun resumes from them
Checkpoints of earlier versions (`*.pt`, written by torch.save) are refused, never opened
(`LegacyCheckpointError`).

Determinism: the batch of step i is drawn from default_rng((seed, stage, i)) and the flow draws
from a torch generator seeded the same way, so a resumed run takes the same batches as an
uninterrupted one. Threads are set by the caller (`set_threads`), never at import.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch

from xr0lab.dynreach.arms import Arm
from xr0lab.dynreach.data import ExpertDataset, ScenarioMix, generate_mix, split_seeds
from xr0lab.dynreach.policies import (Tier0Config, Tier0Policy, action_mask, normalise_actions,
                                      normalise_state)
from xr0lab.dynreach.probe import linear_probe
from xr0lab.dynreach.scenarios import as_scenarios
from xr0lab.dynreach.store import read_pair, remove_pair, write_pair

Dataset = Union[ExpertDataset, ScenarioMix]


@dataclass(frozen=True)
class TrainSettings:
    """Steps and data of both stages. `stage_b_cache` states are the frozen-encoder cache.

    `scenario` is one scenario or a tuple of them (trained on as one `ScenarioMix`, with
    `train_episodes` episodes of each).
    """

    scenario: str | tuple[str, ...] = "S1"
    train_episodes: int = 400
    stage_a_steps: int = 1500
    stage_b_steps: int = 600
    batch_size: int = 64
    lr_a: float = 1e-3
    lr_b: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    stage_b_cache: int = 16384
    checkpoint_every: int = 200
    freq_coef: float = 1.0
    probe_samples: int = 2048
    # Chunk labels (docs/dynreach.md §2): "executed" (v2) or "replan" (version 1's; the
    # committed v1 results were trained with them, so v1's presets name it).
    labels: str = "executed"

    @property
    def scenarios(self) -> tuple[str, ...]:
        return as_scenarios(self.scenario)

    def __post_init__(self) -> None:
        self.scenarios  # validates
        for name in ("train_episodes", "stage_a_steps", "batch_size", "stage_b_cache"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.stage_b_steps < 0:
            raise ValueError(f"TrainSettings.stage_b_steps must be >= 0, got {self.stage_b_steps}")


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 1e-2 * peak + (peak - 1e-2 * peak) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr,
                             betas=(0.9, 0.95))


def step_generator(*key: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed % (2 ** 63))


class LegacyCheckpointError(RuntimeError):
    """A run directory holds a torch.save checkpoint of an earlier version; it is never opened
    (unpickling runs whatever code the file names)."""


def _refuse_legacy(path: Path) -> Path:
    """`path` (a checkpoint's JSON), unless an earlier version's `.pt` checkpoint sits in its
    place: that is an error, so a run never silently retrains beside it or misreads it."""
    legacy = path.with_suffix(".pt")
    if legacy.exists():
        raise LegacyCheckpointError(
            f"{legacy} is a checkpoint of an earlier DynReach version (torch.save, a pickle); "
            "run directories are never unpickled. Delete it and the run trains it again, or, "
            "for a run directory you made yourself, load it with torch (weights_only=True) and "
            f"store its dict with xr0lab.dynreach.train.write_checkpoint({str(path)!r}, ck).")
    return path


def write_checkpoint(path: Path | str, ck: dict, *, replace: bool = False) -> None:
    """Write a checkpoint dict: its tensors to the sibling `.safetensors`, the rest to `path`
    (a .json, written last). An existing checkpoint raises FileExistsError unless `replace`."""
    write_pair(path, ck, kind="checkpoint", backend="torch", replace=replace)


def read_checkpoint(path: Path | str) -> dict:
    """The dict `write_checkpoint` stored at `path` (tensors back as torch tensors), read with
    safetensors and JSON only."""
    return read_pair(_refuse_legacy(Path(path)), kind="checkpoint", backend="torch")


def seed_dir(run_dir: Path | str, seed: int) -> Path:
    path = Path(run_dir) / f"seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset(settings: TrainSettings, seed: int, horizon: int = 16,
            labels: str | None = None) -> Dataset:
    """The training set of one seed: fixed train-split episodes (the data are the same for
    every seed; the seed changes initialisation, batch order and flow draws). `labels`
    overrides the settings' label mode (an arm's own, e.g. v2's re-plan control)."""
    return generate_mix(settings.scenarios, split_seeds("train", settings.train_episodes),
                        horizon=horizon, labels=labels or settings.labels)


def _progress(total: int, desc: str, initial: int, enabled: bool):
    from xr0lab.workspace.frontend import progress

    return progress(total=total, initial=initial, desc=desc, enabled=enabled, leave=False,
                    mininterval=2.0)


def run_loop(*, path: Path, steps: int, params, lr: float, settings: TrainSettings,
              loss_fn: Callable[[int], torch.Tensor], state: Callable[[], dict],
              load: Callable[[dict], None], desc: str, progress: bool,
              stop: Callable[[int], tuple[bool, dict]] | None = None,
              stop_every: int | None = None) -> dict:
    """Shared optimisation loop with periodic resumable checkpoints.

    `stop(step)` (called after every `stop_every` steps) may end training early: it returns
    (done, record); the records are returned as "checks" and the loop reports the steps it
    took. A quality gate stops at a checkpoint boundary so a resumed run replays its checks.
    """
    if stop is not None and (not stop_every or stop_every % settings.checkpoint_every
                             and settings.checkpoint_every % stop_every):
        raise ValueError(f"stop_every ({stop_every}) and checkpoint_every "
                         f"({settings.checkpoint_every}) must divide one another")
    partial = _refuse_legacy(path.with_name(path.stem + ".partial.json"))
    opt = _optimizer(params, lr, settings.weight_decay)
    start, losses, wall = 0, [], 0.0
    if partial.exists():
        ck = read_checkpoint(partial)
        load(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, losses, wall = ck["step"], ck["losses"], ck["wall_s"]
    params = [p for g in opt.param_groups for p in g["params"]]
    t0 = time.perf_counter()
    checks: list[dict] = []
    stopped: int | None = None
    if stop is not None:
        # Replay the checks a resumed run already passed (deterministic: same weights then).
        checks = list(ck.get("checks", [])) if partial.exists() else []
    bar = _progress(steps, desc, start, progress)
    for step in range(start, steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr, settings.warmup)
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if stop is not None and (step + 1) % stop_every == 0 and step + 1 < steps:
            done, record = stop(step + 1)
            checks.append(record)
            if done:
                stopped = step + 1
                break
        if (step + 1) % settings.checkpoint_every == 0 and step + 1 < steps:
            # With the AdamW state (per-parameter step / exp_avg / exp_avg_sq tensors, stored
            # as opt.state.<i>.<name>) and its param_groups, a resumed run is bit-identical.
            write_checkpoint(partial, {"model": state(), "opt": opt.state_dict(),
                                       "step": step + 1, "losses": losses,
                                       "wall_s": wall + time.perf_counter() - t0,
                                       "checks": checks}, replace=True)
    bar.close()
    if stop is not None and stopped is None:
        checks.append(stop(steps)[1])
    return {"losses": losses, "wall_s": wall + time.perf_counter() - t0, "partial": partial,
            "steps": stopped or steps, "checks": checks}


def train_stage_a(run_dir: Path | str, seed: int, cfg: Tier0Config, settings: TrainSettings,
                  *, progress: bool = True, data: Dataset | None = None,
                  gate: Callable[[Tier0Policy, int], tuple[bool, dict]] | None = None,
                  gate_every: int | None = None) -> Path:
    """Encoder + DiT without prefix; returns the checkpoint path (skips when it exists).

    `gate(model, step) -> (passed, record)` is the quality gate (docs/dynreach.md §7): checked
    every `gate_every` steps, it ends stage A at the first pass; `settings.stage_a_steps` is
    the stated maximum. The checkpoint records the steps used and every check."""
    seed_dir(run_dir, seed)
    path = stage_a_path(run_dir, seed)
    if path.exists():
        return path
    data = dataset(settings, seed, cfg.chunk_length) if data is None else data
    torch.manual_seed(seed)
    model = Tier0Policy(cfg, None, freq_coef=settings.freq_coef)
    B, H, A = settings.batch_size, cfg.chunk_length, cfg.padded_dim
    mask = action_mask(B, H, A)

    def loss_fn(step: int) -> torch.Tensor:
        rng = np.random.default_rng((seed, 0xA, step))
        b = data.batch(rng.integers(0, len(data), B), cfg.image_size)
        ctx = model.context(b)
        return model.expert.flow_loss(ctx, normalise_actions(b["actions"], A), mask,
                                      normalise_state(b["state"], A), prefix_length=0,
                                      generator=step_generator(seed, 0xA, step)).loss

    out = run_loop(path=path, steps=settings.stage_a_steps, params=model.parameters(),
                    lr=settings.lr_a, settings=settings, loss_fn=loss_fn,
                    state=model.state_dict, load=model.load_state_dict,
                    desc=f"stage A seed {seed}", progress=progress,
                    stop=None if gate is None else (lambda step: gate(model, step)),
                    stop_every=gate_every)
    probe = goal_probe(model, data, settings.probe_samples, cfg.image_size, seed)
    write_checkpoint(path, {"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                            "settings": dataclasses.asdict(settings), "losses": out["losses"],
                            "wall_s": out["wall_s"], "probe": probe, "seed": seed,
                            "steps": out["steps"], "gate": out["checks"]})
    remove_pair(out["partial"])
    return path


@torch.no_grad()
def goal_probe(model: Tier0Policy, data: Dataset, n: int, image_size: int,
               seed: int) -> dict:
    """Linear probe of the visible goal from the context tokens (encoder features), held out."""
    rng = np.random.default_rng((seed, 0xB0B))
    idx = rng.choice(len(data), size=min(n, len(data)), replace=False)
    feats = []
    for i in range(0, len(idx), 256):
        b = data.batch(idx[i:i + 256], image_size)
        feats.append(model.encoder.tokens(b["image"], b["state"], b["tokens"])[0].numpy())
    return linear_probe(np.concatenate(feats), data.goal[idx], seed=seed)


@torch.no_grad()
def cache_features(model: Tier0Policy, data: Dataset, n: int, image_size: int,
                   seed: int) -> dict:
    """Frozen-encoder token features of n training states (float16 to halve memory)."""
    rng = np.random.default_rng((seed, 0xCAC4E))
    idx = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    feats, masks = [], []
    for i in range(0, len(idx), 512):
        b = data.batch(idx[i:i + 512], image_size)
        f, m = model.encoder.tokens(b["image"], b["state"], b["tokens"])
        feats.append(f.half())
        masks.append(m)
    return {"index": idx, "features": torch.cat(feats), "mask": torch.cat(masks),
            "actions": normalise_actions(data.chunk[idx], model.cfg.padded_dim),
            "state": normalise_state(data.position[idx], model.cfg.padded_dim)}


def load_stage_a(run_dir: Path | str, seed: int, cfg: Tier0Config, arm: Arm | None = None,
                 freq_coef: float = 1.0) -> tuple[Tier0Policy, dict]:
    path = stage_a_path(run_dir, seed)
    if not path.exists():
        raise FileNotFoundError(f"no stage-A checkpoint at {path}; run train_stage_a first")
    ck = read_checkpoint(path)
    if ck["config"] != dataclasses.asdict(cfg):
        raise ValueError(f"stage-A checkpoint {path} was trained with {ck['config']}, not {cfg}")
    model = Tier0Policy(cfg, arm, freq_coef=freq_coef)
    model.load_state_dict(ck["model"])
    return model, ck


def stage_a_path(run_dir: Path | str, seed: int) -> Path:
    """The stage-A checkpoint's JSON (its existence means stage A is done); creates nothing."""
    return _refuse_legacy(Path(run_dir) / f"seed{seed}" / "stage_a.json")


def stage_b_path(run_dir: Path | str, seed: int, arm: Arm) -> Path:
    """The stage-B checkpoint's JSON of `arm` (its existence means the arm is trained)."""
    return _refuse_legacy(seed_dir(run_dir, seed) / f"stage_b_{arm.training_key}.json")


def train_stage_b(run_dir: Path | str, seed: int, arm: Arm, cfg: Tier0Config,
                  settings: TrainSettings, *, progress: bool = True,
                  data: Dataset | None = None) -> Path:
    """Fine-tune the DiT for `arm` from the seed's stage-A weights (encoder frozen, cached)."""
    path = stage_b_path(run_dir, seed, arm)
    if path.exists():
        return path
    model, _ = load_stage_a(run_dir, seed, cfg, arm, settings.freq_coef)
    data = dataset(settings, seed, cfg.chunk_length, arm.labels) if data is None else data
    model.encoder.requires_grad_(False)
    cache = cache_features(model, data, settings.stage_b_cache, cfg.image_size, seed)
    B, H, M = settings.batch_size, cfg.chunk_length, len(cache["index"])
    mask = action_mask(B, H, cfg.padded_dim)
    expert = model.expert

    def loss_fn(step: int) -> torch.Tensor:
        rng = np.random.default_rng((seed, 0xB, step))
        i = torch.as_tensor(rng.integers(0, M, B))
        with torch.no_grad():
            ctx = model.encoder.context(cache["features"][i].float(), cache["mask"][i])
        g = step_generator(seed, 0xB, step)
        # No-prefix arms draw no prefix length (p = 0 always) but take the same steps.
        p = None if arm.train_prefix else 0
        return expert.flow_loss(ctx, cache["actions"][i], mask, cache["state"][i],
                                prefix_length=p, generator=g).loss

    def state() -> dict:
        return expert.state_dict()

    out = run_loop(path=path, steps=settings.stage_b_steps, params=expert.parameters(),
                    lr=settings.lr_b, settings=settings, loss_fn=loss_fn, state=state,
                    load=expert.load_state_dict, desc=f"stage B {arm.training_key} s{seed}",
                    progress=progress)
    write_checkpoint(path, {"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                            "arm": dataclasses.asdict(arm), "losses": out["losses"],
                            "wall_s": out["wall_s"], "seed": seed})
    remove_pair(out["partial"])
    return path


def load_policy(run_dir: Path | str, seed: int, arm: Arm, cfg: Tier0Config,
                freq_coef: float = 1.0) -> tuple[Tier0Policy, dict]:
    """The trained stage-B policy of `arm` (its config carries the arm's mode)."""
    path = stage_b_path(run_dir, seed, arm)
    if not path.exists():
        raise FileNotFoundError(f"no stage-B checkpoint for arm {arm.id} at {path}")
    ck = read_checkpoint(path)
    model = Tier0Policy(cfg, arm, freq_coef=freq_coef)
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def write_json(obj, path: Path | str) -> None:
    """Strict JSON (NaN/inf -> null), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def to_jsonable(x):
    """numpy/Path/tuple -> plain JSON types, non-finite floats -> None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x
