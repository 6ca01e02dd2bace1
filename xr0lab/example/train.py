"""Training the example model: the real `tiny` XR-0 preset on DynReach, in XR-0's stages.

    stage 1  VLM (all but the frozen vocabulary embedding) + DiT, release mode, flow loss
             (+ the optional grounding objective through the language-model head)
    stage 2  DiT only, VLM frozen, release mode          -> checkpoint "release"
    stage 3  DiT only, xr0-async post-training: prefix schedule, Λ band, +10 gap, prefix
             hiding, L1 reweighting, frequency term     -> checkpoint "xr0-async"

Deliberate choices, each measured (docs/example_model.md):
- The tied vocabulary embedding (19.5M of the 22.4M parameters) is frozen at its seeded
  initialisation: about 20 of its rows are ever used, and its dense AdamW update cost more than
  the rest of a step.
- The frequency term ignores the 30 padded action dims (`mask_freq_padding`), as tier 0 does:
  DynReach acts in 2 of the 32 dims, and on the padding the term fits pure noise (measured: it
  was most of the loss and the policy did not learn).
- `training_repeat` is 1: XR-0 repeats the DiT to amortise a 4B VLM forward; here the VLM is the
  cheaper half.

Determinism: the batch of step i of stage k is drawn from default_rng((seed, k, i)) and the flow
draws from a generator seeded the same way; every stage writes resumable partial checkpoints
(safetensors + JSON, nothing unpickled), so an interrupted run resumes where it stopped and
matches an uninterrupted one. Threads are the caller's (`xr0lab.workspace.set_threads`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xr0lab.config import XR0Config, preset
from xr0lab.dynreach.data import generate_mix, split_seeds
from xr0lab.dynreach.instructions import INSTRUCTIONS
from xr0lab.dynreach.policies import normalise_actions, pad_dims
from xr0lab.dynreach.train import TrainSettings, read_checkpoint, run_loop, step_generator, \
    write_checkpoint, write_json
from xr0lab.example.grounding import GoalReadout, GroundingTask
from xr0lab.example.inputs import robot_inputs

STAGES = ("stage1", "stage2", "stage3")


@dataclass(frozen=True)
class ExampleSettings:
    """Everything that decides the example model's weights (a run directory keeps one)."""

    seed: int = 0
    scenarios: tuple[str, ...] = ("S1M", "S1")
    train_episodes: int = 400          # per scenario, train split
    image_size: int = 64               # 4 image tokens (one per 32 x 32 px)
    chunk_length: int = 30
    batch_size: int = 64
    stage1_steps: int = 3000
    stage2_steps: int = 400
    stage3_steps: int = 600
    lr_stage1: float = 1e-3
    lr_stage2: float = 3e-4
    lr_stage3: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    grounding_weight: float = 0.0      # stage 1 only; 0 switches the grounding batch off
    goal_readout_weight: float = 1.0   # stage 1 only: the auxiliary goal read-out (GoalReadout)
    # Stage 1 stops early once validation plain success at d = 0 reaches `gate_target` in both
    # scenarios (checked every `gate_every` steps on `gate_episodes` validation episodes each).
    gate_target: float = 0.97
    gate_every: int = 500
    gate_episodes: int = 64
    num_steps: int = 5                 # flow steps at inference

    def __post_init__(self) -> None:
        for name in ("train_episodes", "batch_size", "stage1_steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExampleSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stage2_steps", "stage3_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"ExampleSettings.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size % 32:
            raise ValueError(f"ExampleSettings.image_size must be a multiple of 32 px, got "
                             f"{self.image_size}")
        if self.grounding_weight < 0:
            raise ValueError("ExampleSettings.grounding_weight must be >= 0")

    def loop_settings(self) -> TrainSettings:
        """What the shared optimisation loop reads (warm-up, decay, clipping, checkpoints)."""
        return TrainSettings(scenario=self.scenarios, warmup=self.warmup,
                             weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def model_config(settings: ExampleSettings, mode: str) -> XR0Config:
    """The tiny preset in `mode`, with the example model's training choices (module docstring)."""
    cfg = preset("tiny", mode=mode, chunk_length=settings.chunk_length,
                 num_steps=settings.num_steps)
    train = dataclasses.replace(cfg.train, training_repeat=1, mask_freq_padding=True,
                                freq_weight="valid_mean")
    return dataclasses.replace(cfg, train=train)


def build_model(settings: ExampleSettings, mode: str = "release"):
    """A freshly initialised tiny XR-0 (seeded), its vocabulary embedding frozen."""
    from xr0lab.model.xr0 import XR0Model

    torch.manual_seed(settings.seed)
    model = XR0Model(model_config(settings, mode))
    freeze_embedding(model)
    return model


def freeze_embedding(model) -> None:
    model.vlm.model.language_model.embed_tokens.weight.requires_grad_(False)


def training_data(settings: ExampleSettings):
    return generate_mix(settings.scenarios, split_seeds("train", settings.train_episodes),
                        horizon=settings.chunk_length)


def _batch_rng(settings: ExampleSettings, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng((settings.seed, stage, step))


def flow_batch(model, data, settings: ExampleSettings, stage: int, step: int):
    """The robot batch of (stage, step): model inputs and normalised action labels."""
    idx = _batch_rng(settings, stage, step).integers(0, len(data), settings.batch_size)
    b = data.batch(idx, settings.image_size)
    words = [INSTRUCTIONS["S1"]] * len(idx)  # S1 and S1M share their words
    inputs = robot_inputs(b["image"], b["state"], words, model.config.action.action_dim,
                          settings.chunk_length)
    actions = pad_dims(normalise_actions(b["actions"]), model.config.action.action_dim)
    return inputs, actions, idx


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def stage_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / f"{stage}.json"


def _finished(run_dir: Path, stage: str) -> dict | None:
    path = stage_path(run_dir, stage)
    return read_checkpoint(path) if path.exists() else None


def _train_stage(model, data, settings: ExampleSettings, run_dir: Path, stage: str, *,
                 params, lr: float, steps: int, progress: bool,
                 grounding: GroundingTask | None = None, gate: bool = False,
                 readout: GoalReadout | None = None) -> dict:
    k = STAGES.index(stage) + 1
    parts: dict[str, list[float]] = {"flow": [], "grounding": [], "goal_readout": []}

    def loss_fn(step: int) -> torch.Tensor:
        inputs, actions, idx = flow_batch(model, data, settings, k, step)
        g = step_generator(settings.seed, k, step)
        if readout is None:
            loss = model.compute_loss(**inputs, actions=actions, generator=g).loss
            parts["flow"].append(float(loss.detach()))
        else:
            context = model.prefill(inputs["input_ids"], inputs["attention_mask"],
                                    inputs["pixel_values"], inputs["image_grid_thw"])
            loss = model.flow_loss(context, actions, inputs["action_mask"], inputs["state"],
                                   generator=g).loss
            parts["flow"].append(float(loss.detach()))
            rl = readout.loss(context, data.goal[idx])
            parts["goal_readout"].append(float(rl.detach()))
            loss = loss + settings.goal_readout_weight * rl
        if grounding is not None and settings.grounding_weight:
            idx = _batch_rng(settings, 10 + k, step).integers(0, len(data), settings.batch_size)
            gl = grounding.loss(model, data, idx, settings.image_size)
            parts["grounding"].append(float(gl.detach()))
            loss = loss + settings.grounding_weight * gl
        return loss

    def check(step: int) -> tuple[bool, dict]:
        model.eval()
        record = {"step": step, **validation_success(model, settings)}
        model.train()
        if progress:
            print(f"  {stage} step {step}: validation plain success {record}", flush=True)
        return min(record[sc] for sc in settings.scenarios) >= settings.gate_target, record

    def state() -> dict:
        extra = {} if readout is None else {GoalReadout.PREFIX + n: t.detach().clone()
                                            for n, t in readout.state_dict().items()}
        return {**_state(model), **extra}

    def load(sd: dict) -> None:
        p = GoalReadout.PREFIX
        model.load_state_dict({n: t for n, t in sd.items() if not n.startswith(p)})
        if readout is not None:
            readout.load_state_dict({n[len(p):]: t for n, t in sd.items() if n.startswith(p)})

    if readout is not None:
        params = [*params, *readout.parameters()]
    out = run_loop(path=stage_path(run_dir, stage), steps=steps, params=params, lr=lr,
                   settings=settings.loop_settings(), loss_fn=loss_fn, state=state, load=load,
                   desc=f"example model {stage}", progress=progress,
                   stop=check if gate else None, stop_every=settings.gate_every if gate else None)
    record = {"model": _state(model), "losses": out["losses"], "wall_s": out["wall_s"],
              "steps": out["steps"], "checks": out["checks"], "parts": parts,
              "settings": settings.to_dict()}
    write_checkpoint(stage_path(run_dir, stage), record)
    from xr0lab.dynreach.store import remove_pair

    remove_pair(out["partial"])
    return record


def train_example(settings: ExampleSettings = ExampleSettings(), run_dir: Path | str = "runs/example_model",
                  *, progress: bool = True) -> dict:
    """Train (or resume) the three stages under `run_dir`; returns {"release": model,
    "xr0-async": model, "records": {stage: losses and wall time}}. Finished stages are read back,
    never retrained."""
    from xr0lab.dynreach.sweep import check_run_config

    run_dir = Path(run_dir)
    check_run_config(run_dir, _RunConfig(settings), "example-model training")
    data = training_data(settings)
    records: dict[str, dict] = {}
    model = build_model(settings, "release")

    def stage(model, name: str, lr: float, steps: int, **kwargs):
        """Train stage `name` of `model` (or read it back if finished); the model, in eval."""
        rec = _finished(run_dir, name)
        if rec is None:
            model.train()
            rec = _train_stage(model, data, settings, run_dir, name, params=_trainable(model),
                               lr=lr, steps=steps, progress=progress, **kwargs)
        model.load_state_dict(rec["model"])
        records[name] = rec
        return model.eval()

    # Stage 1: VLM (embedding frozen) and DiT together, until the gate or the step budget.
    stage(model, "stage1", settings.lr_stage1, settings.stage1_steps, gate=True,
          grounding=GroundingTask() if settings.grounding_weight else None,
          readout=_readout(model, settings))
    # Stage 2: the VLM frozen, the DiT (projectors, timestep path, sink) trains.
    model.vlm.requires_grad_(False)
    release = stage(model, "stage2", settings.lr_stage2, settings.stage2_steps)
    # Stage 3: xr0-async post-training of the DiT from the stage-2 weights.
    post = build_model(settings, "xr0-async")
    post.load_state_dict(records["stage2"]["model"])
    post.vlm.requires_grad_(False)
    post = stage(post, "stage3", settings.lr_stage3, settings.stage3_steps)
    return {"release": release, "xr0-async": post,
            "records": {k: {"losses": v["losses"], "wall_s": v["wall_s"], "steps": v["steps"],
                            "checks": v.get("checks", []), "parts": v.get("parts", {})}
                        for k, v in records.items()}}


def stage1_losses(settings: ExampleSettings, steps: int, run_dir: Path | str) -> list[float]:
    """The first `steps` stage-1 losses, from scratch (the full run's first steps exactly: the
    batches, flow draws and warm-up learning rates do not depend on the stage's length)."""
    if not 0 < steps <= settings.warmup:
        raise ValueError(f"stage1_losses: steps must be in [1, warmup = {settings.warmup}] "
                         f"(past the warm-up the learning rate depends on the stage's length)")
    model = build_model(settings, "release").train()
    grounding = GroundingTask() if settings.grounding_weight else None
    rec = _train_stage(model, training_data(settings), settings, Path(run_dir), "stage1",
                       params=_trainable(model), lr=settings.lr_stage1, steps=steps,
                       progress=False, grounding=grounding, readout=_readout(model, settings))
    return rec["losses"]


def _readout(model, settings: ExampleSettings) -> GoalReadout | None:
    """Stage 1's auxiliary goal read-out, seeded apart from the model (None when its weight
    is 0)."""
    if not settings.goal_readout_weight:
        return None
    torch.manual_seed(settings.seed + 0x60A1)
    return GoalReadout.for_model(model, settings.image_size)


def settings_from_dict(d: dict) -> ExampleSettings:
    """`ExampleSettings.to_dict()` back (JSON lists become the tuples they were)."""
    return ExampleSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def validation_success(model, settings: ExampleSettings) -> dict:
    """Plain success at d = 0 on `gate_episodes` validation episodes of each scenario."""
    from xr0lab.example.evaluate import success

    seeds = split_seeds("validation", settings.gate_episodes)
    return {sc: success(model, sc, 0, seeds, image_size=settings.image_size)["success_plain"]
            for sc in settings.scenarios}


@dataclass(frozen=True)
class _RunConfig:
    settings: ExampleSettings

    def to_dict(self) -> dict:
        return {"example_model": self.settings.to_dict(), "arms": [], "seeds": []}


__all__ = ["ExampleSettings", "STAGES", "build_model", "flow_batch",
           "model_config", "settings_from_dict", "stage1_losses", "train_example",
           "training_data"]
