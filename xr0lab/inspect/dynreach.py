"""The example model in its DynReach world: scenes to show it, its chunks as paths, and where they
head.

The example model (`xr0lab.example`) acts in DynReach: a chunk is H commands in world units
(|a| <= v_max per tick) that move a point agent in the unit square toward a green target. These
helpers put what the notebooks ask of the model in the world's terms:

    scenes           states of the example model's own test episodes (never trained on) with
                     frame, instruction, visible target, the expert's chunk label and its plan
    with_goal        the same states drawn with the target moved elsewhere (`far_goals`)
    chunk_path       the positions an agent passes executing a chunk, in the world's physics
    heading_angle    the angle between where a chunk goes and the direction of a target
    target_metrics   angle and end distance to named targets
    world_chunk      normalised model actions -> world-unit commands
    example_metrics  what the build measured (metrics.json), and `describe_metrics` in words
    kv_target_sweep  zero or swap (image) K/V of chosen VLM layers, measured as where the chunk
                     heads

Axes: B samples, H chunk length, S image side, 2 = (x, y) in [0, 1]^2 with y up, as drawn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from xr0lab.dynreach.physics import V_MAX, advance, clip_norm
from xr0lab.dynreach.scenarios import Episodes
from xr0lab.model.vlm import VLMContext


@dataclass(frozen=True)
class Scene:
    """B DynReach states: what the policy observes and what the expert did there."""

    scenario: str
    episodes: Episodes    # the B source episodes (one per state)
    tick: np.ndarray      # (B,) tick of each state in its episode
    image: np.ndarray     # (B, S, S, 3) uint8 frames
    state: np.ndarray     # (B, 2) agent positions
    tokens: np.ndarray    # (B, L) instruction tokens
    goal: np.ndarray      # (B, 2) the target visible in the frame
    label: np.ndarray     # (B, H, 2) the chunk label training fits ("executed": what the logged
                          # expert did next, bending toward later jumps the frame cannot show)
    plan: np.ndarray      # (B, H, 2) the expert's open-loop plan toward the visible target
    prev_action: np.ndarray  # (B, 2) the command executed before this state (not observed)

    @property
    def obs(self) -> dict[str, np.ndarray]:
        """The observation dict `TinyPolicy.inputs` reads."""
        return {"image": self.image, "state": self.state, "tokens": self.tokens}

    @property
    def old_goal(self) -> np.ndarray:
        """(B, 2) where the target stood before its (first) jump."""
        return self.episodes.old_goal

    def __len__(self) -> int:
        return len(self.tick)


def scenes(scenario: str = "S1M", n: int = 4, *, after_jump: int = 3, offset: int | None = None,
           image_size: int = 64, horizon: int = 30) -> Scene:
    """One state from each of `n` test episodes of `scenario`: the tick `after_jump` ticks after
    the target's (first) jump, so the frame shows the new target while the agent still moves
    the way the old one drew it (in S1M it was moving fast at the jump).

    The episodes are the example model's own test episodes (test split, offset
    `xr0lab.example.evaluate.TEST_OFFSET` unless given), which it never trained on. `label` is
    the training label of each state; `plan` is what the expert would do from it if the scene
    stayed as the frame shows it (`expert_continuation`): the path to compare a chunk with.
    """
    from xr0lab.dynreach.data import generate, split_seeds
    from xr0lab.dynreach.expert import expert_continuation
    from xr0lab.example.evaluate import TEST_OFFSET

    if n < 1:
        raise ValueError(f"scenes: n must be >= 1, got {n}")
    seeds = split_seeds("test", n, TEST_OFFSET if offset is None else offset)
    data = generate(scenario, seeds, horizon=horizon)
    ticks_per_episode = len(data) // n
    tick = np.minimum(data.episodes.t_perturb + after_jump, ticks_per_episode - 1)
    index = np.arange(n) * ticks_per_episode + tick
    b = data.batch(index, image_size)
    episodes = data.episodes.take(data.episode[index])
    if episodes.wall_centre is not None or episodes.targets is not None:
        raise ValueError(f"scenes: {scenario} is not a one-target scenario (S1, S1E, S1M, S4)")
    plan, _ = expert_continuation(data.position[index].astype(np.float64),
                                  data.prev_action[index].astype(np.float64),
                                  data.goal[index].astype(np.float64), horizon)
    return Scene(scenario, episodes, data.tick[index], b["image"], b["state"], b["tokens"],
                 data.goal[index], b["actions"], plan.astype(np.float32), data.prev_action[index])


def with_goal(scene: Scene, goal: np.ndarray, image_size: int | None = None) -> Scene:
    """`scene` with the visible target moved to `goal` (B, 2): the same agent, tick and
    instruction, the frame redrawn (S1 / S1M / S1E / S4: one target), and the expert's plan
    redrawn toward the new target; the training label is kept (it answers the original scene)."""
    from xr0lab.dynreach.expert import expert_continuation
    from xr0lab.dynreach.render import render

    goal = np.asarray(goal, np.float64).reshape(len(scene), 2)
    if scene.episodes.targets is not None:
        raise ValueError("with_goal moves the one target of S1-type scenes; S2 has two")
    traj = np.broadcast_to(goal[:, None, :], scene.episodes.goal_traj.shape).copy()
    episodes = dataclasses.replace(scene.episodes, goal_traj=traj)
    size = image_size or scene.image.shape[1]
    image = render(episodes, scene.tick, scene.state, size)
    plan, _ = expert_continuation(scene.state.astype(np.float64),
                                  scene.prev_action.astype(np.float64), goal, scene.plan.shape[1])
    return dataclasses.replace(scene, episodes=episodes, image=image,
                               goal=goal.astype(np.float32), plan=plan.astype(np.float32))


def far_goals(goal: np.ndarray, *, seed: int = 0, min_distance: float = 0.4,
              start: np.ndarray | None = None, min_angle: float = 0.0,
              min_start_distance: float = 0.25, lo: float = 0.1, hi: float = 0.9,
              candidates: int = 4096) -> np.ndarray:
    """(B, 2) targets in [lo, hi]^2 at least `min_distance` from each `goal` (B, 2), drawn from a
    seeded generator among `candidates` uniform points. With `start` (B, 2), each also lies
    `min_start_distance` from its start and, seen from it, at least `min_angle` degrees away from
    the goal's direction, so a chunk heading at one is told from one heading at the other; where
    no candidate reaches `min_angle` (an agent in a corner), the widest angle available is taken.
    """
    goal = np.asarray(goal, np.float64).reshape(-1, 2)
    start = None if start is None else np.asarray(start, np.float64).reshape(-1, 2)
    rng = np.random.default_rng((seed, 0x60A1))
    out = np.empty_like(goal)
    for i, g in enumerate(goal):
        c = rng.uniform(lo, hi, (candidates, 2))
        ok = np.linalg.norm(c - g, axis=-1) >= min_distance
        angle = np.full(candidates, 180.0)
        if start is not None:
            to_c, to_g = c - start[i], g - start[i]
            ok &= np.linalg.norm(to_c, axis=-1) >= min_start_distance
            cos = (to_c @ to_g) / np.maximum(np.linalg.norm(to_c, axis=-1)
                                             * np.linalg.norm(to_g), 1e-12)
            angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        if not ok.any():
            raise ValueError(f"far_goals: no point of [{lo}, {hi}]^2 meets the distance "
                             f"constraints for goal {g}")
        wide = ok & (angle >= min_angle)
        out[i] = c[np.flatnonzero(wide)[0]] if wide.any() else c[ok][np.argmax(angle[ok])]
    return out


def chunk_path(start: Any, actions: Any, *, v_max: float = V_MAX) -> np.ndarray:
    """(..., H + 1, 2) the positions an agent at `start` (..., 2) passes executing `actions`
    (..., H, 2) in world units, by the world's rules (`xr0lab.dynreach.physics`): each command's
    norm clipped to `v_max`, positions clipped to the unit square (no wall).

    >>> chunk_path([0.5, 0.5], [[0.03, 0.0], [0.06, 0.0], [0.0, -0.01]]).round(4).tolist()
    [[0.5, 0.5], [0.53, 0.5], [0.56, 0.5], [0.56, 0.49]]
    """
    a = np.asarray(actions, np.float64)
    if a.ndim < 2 or a.shape[-1] != 2:
        raise ValueError(f"actions must be (..., H, 2), got shape {a.shape}")
    pos = np.broadcast_to(np.asarray(start, np.float64), a.shape[:-2] + (2,)).copy()
    path = [pos]
    for k in range(a.shape[-2]):
        pos = advance(pos, clip_norm(a[..., k, :], v_max))
        path.append(pos)
    return np.stack(path, axis=-2)


def heading_angle(start: Any, actions: Any, target: Any, *, ticks: int | None = None,
                  v_max: float = V_MAX) -> np.ndarray:
    """(...) degrees between the agent's displacement after `ticks` commands of the chunk
    (default: all of them) and the direction from `start` to `target`: 0 heads straight at the
    target, 180 straight away. NaN where the chunk does not move.

    >>> heading_angle([0.5, 0.5], [[0.01, 0.0]] * 3, [[0.9, 0.5], [0.5, 0.9], [0.1, 0.5]]).tolist()
    [0.0, 90.0, 180.0]
    """
    start = np.asarray(start, np.float64)
    path = chunk_path(start, actions, v_max=v_max)
    k = path.shape[-2] - 1 if ticks is None else ticks
    if not 1 <= k < path.shape[-2]:
        raise ValueError(f"ticks must be in [1, {path.shape[-2] - 1}], got {k}")
    moved = path[..., k, :] - start
    to = np.asarray(target, np.float64) - start
    norm = np.linalg.norm(moved, axis=-1) * np.linalg.norm(to, axis=-1)
    cos = np.where(norm > 1e-12, (moved * to).sum(-1) / np.maximum(norm, 1e-12), np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def target_metrics(start: Any, actions: Any, targets: Mapping[str, Any], *,
                   ticks: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{target name: {"angle_deg": heading angle (B,), "end_distance": distance (B,) from where
    the chunk ends to the target}} for world-unit `actions` (B, H, 2) from `start` (B, 2)."""
    path = chunk_path(start, actions)
    return {name: {"angle_deg": heading_angle(start, actions, t, ticks=ticks),
                   "end_distance": np.linalg.norm(path[..., -1, :] - np.asarray(t), axis=-1)}
            for name, t in targets.items()}


def world_chunk(actions: torch.Tensor) -> np.ndarray:
    """Normalised model actions (B, H, A) -> world-unit commands (B, H, 2) (active dims 0, 1)."""
    from xr0lab.dynreach.policies import denormalise_actions

    return denormalise_actions(actions.float().cpu())


def kv_target_sweep(model: Any, context: VLMContext, other: VLMContext, state: torch.Tensor,
                    action_mask: torch.Tensor, *, noise: torch.Tensor, start: np.ndarray,
                    targets: Mapping[str, np.ndarray], kinds: Sequence[str] = ("zero", "swap"),
                    vlm_layers: Iterable[int] | None = None, tokens: torch.Tensor | None = None,
                    ticks: int | None = None, **sample_kwargs: Any) -> list[dict[str, Any]]:
    """Sample the intact context and each K/V variant (`kv_variants`: zero or swap with `other`,
    per VLM layer and all of them, restricted to the prompt columns `tokens`) under identical
    `noise`, and measure where each chunk heads.

    Records (the intact one first, kind "intact"): {"kind", "vlm_layer", "chunk" (B, H, 2) world
    units, and per target name t: "angle_t" and "distance_t", the means over samples, plus
    "angles_t" (B,)}.
    """
    from xr0lab.inspect.interventions import kv_variants

    variants = {"intact": ({"kind": "intact", "vlm_layer": None}, context),
                **kv_variants(context, other=other, kinds=kinds, vlm_layers=vlm_layers,
                              tokens=tokens)}
    out = []
    with torch.no_grad():
        for meta, ctx in variants.values():
            chunk = world_chunk(model.sample(ctx, state, action_mask, noise=noise,
                                             **sample_kwargs))
            rec: dict[str, Any] = {**meta, "chunk": chunk}
            for name, m in target_metrics(start, chunk, targets, ticks=ticks).items():
                rec[f"angle_{name}"] = float(np.nanmean(m["angle_deg"]))
                rec[f"distance_{name}"] = float(np.mean(m["end_distance"]))
                rec[f"angles_{name}"] = m["angle_deg"]
            out.append(rec)
    return out


def example_metrics() -> dict | None:
    """The example model's metrics.json (written by `python -m xr0lab example-model build`)
    as a dict, or None where there is none (e.g. a checkpoint given by $XR0LAB_CHECKPOINT)."""
    import json

    from xr0lab.example.load import example_dir

    path = example_dir() / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def describe_metrics(metrics: Mapping[str, Any]) -> str:
    """What the build measured, one line per checkpoint: plain success per scenario and delay
    over its test episodes, and the goal probe's held-out R^2; then the training steps.

    >>> print(describe_metrics({"success": {"release": {"S1M|d=0": {"success_plain": 0.5,
    ...     "episodes": 8}}}, "goal_probe": {"release": {"r2": 0.25}},
    ...     "training": {"stage1": {"steps": 4}}}))
    release: plain success S1M d=0 0.500 (8 episodes each); goal probe R^2 0.250
    training steps: stage1 4
    """
    lines = []
    for mode, rows in metrics.get("success", {}).items():
        cells = ", ".join(f"{k.replace('|', ' ')} {v['success_plain']:.3f}"
                          for k, v in rows.items())
        n = {v.get("episodes") for v in rows.values()}
        each = f" ({n.pop()} episodes each)" if len(n) == 1 and None not in n else ""
        probe = metrics.get("goal_probe", {}).get(mode, {}).get("r2")
        tail = "" if probe is None else f"; goal probe R^2 {probe:.3f}"
        lines.append(f"{mode}: plain success {cells}{each}{tail}")
    if "training" in metrics:
        lines.append("training steps: " + ", ".join(f"{k} {v['steps']}"
                                                    for k, v in metrics["training"].items()))
    return "\n".join(lines)
