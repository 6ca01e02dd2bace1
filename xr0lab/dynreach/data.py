"""DynReach datasets: expert states and action-chunk labels, regenerated from seeds in seconds.

Axis legend: N episodes, M samples (states), H chunk length, S image side, L instruction tokens.

What is stored: per state, the episode it comes from, its tick, the agent position, the
executed command before it (hidden from the policy: the observation has no velocity), the goal
visible at that tick, and the chunk label. Images are rendered in the loader from these, so a
dataset of 240k states is ~40 MB, not ~3 GB of pixels.

Chunk labels (docs/dynreach.md §2), two modes:
- "executed" (v2's default): chunk[k] is the clean expert command the logged closed-loop
  episode holds at tick + k, as logged robot data are. After an event inside the chunk window
  the label bends toward it although the image at `tick` cannot show it yet, and the first p
  rows (the training prefix) are the easiest predictor of the rest: the shortcut the Λ mask
  targets.
- "replan" (version 1, a control): chunk[k] is the clean expert's open-loop plan k ticks ahead
  from the stored state with the scene frozen as currently visible (`expert_continuation`), so a
  label never depends on a perturbation the observation cannot show yet.
Rows past the episode end are the expert's own continuation from the last state (never
padding); `valid[k]` = (tick + k < T) marks the rows inside the episode for losses that prefer
to ignore them. They are finite either way.

Seed splits are disjoint integer ranges, so "test episode 17" means the same episode for every
arm, scenario file and machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Literal, Sequence, get_args

import numpy as np

from xr0lab.dynreach.expert import ExpertConfig, expert_continuation, rollout_expert
from xr0lab.dynreach.instructions import instruction_tokens
from xr0lab.dynreach.physics import Wall
from xr0lab.dynreach.render import ImageDtype, render
from xr0lab.dynreach.scenarios import Episodes, check_scenario
from xr0lab.dynreach.world import WorldConfig

Split = Literal["train", "validation", "test"]
LabelMode = Literal["executed", "replan"]
LABEL_MODES: tuple[str, ...] = get_args(LabelMode)
SPLIT_BASE: dict[str, int] = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
SPLIT_SIZE = 1_000_000
CHUNK = 16
NUM_TEST_EPISODES = 512


def split_seeds(split: Split, n: int, offset: int = 0) -> np.ndarray:
    """Episode seeds [base + offset, base + offset + n) of a split (disjoint ranges)."""
    if split not in SPLIT_BASE:
        raise ValueError(f"split must be one of {tuple(SPLIT_BASE)}, got {split!r}")
    if n < 0 or offset < 0 or offset + n > SPLIT_SIZE:
        raise ValueError(f"split_seeds: need 0 <= offset and offset + n <= {SPLIT_SIZE}, got "
                         f"offset={offset}, n={n}")
    return SPLIT_BASE[split] + offset + np.arange(n, dtype=np.int64)


# The one fixed test list every arm is evaluated on (docs/dynreach.md §7).
TEST_SEEDS = split_seeds("test", NUM_TEST_EPISODES)


@dataclass(frozen=True)
class ExpertDataset:
    """Expert states and chunk labels of one scenario. Arrays are aligned on M samples."""

    scenario: str
    episodes: Episodes           # the N source episodes
    episode: np.ndarray          # (M,) row into `episodes`
    tick: np.ndarray             # (M,)
    position: np.ndarray         # (M, 2) float32, the proprioception
    prev_action: np.ndarray      # (M, 2) float32, executed command before this tick
    goal: np.ndarray             # (M, 2) float32, goal visible at this tick
    chunk: np.ndarray            # (M, H, 2) float32, expert plan from this state
    valid: np.ndarray            # (M, H) bool, tick + k < episode ticks
    noisy: np.ndarray            # (M,) bool, the source episode executed expert + noise

    def __len__(self) -> int:
        return len(self.tick)

    @property
    def horizon(self) -> int:
        return self.chunk.shape[1]

    def images(self, index: np.ndarray, size: int = 64,
               dtype: ImageDtype = "uint8") -> np.ndarray:
        """Render samples `index` -> (B, S, S, 3)."""
        index = np.asarray(index)
        return render(self.episodes.take(self.episode[index]), self.tick[index],
                      self.position[index], size, dtype)

    def batch(self, index: np.ndarray, size: int = 64,
              dtype: ImageDtype = "uint8") -> dict[str, np.ndarray]:
        """A training batch: image, state, tokens (B, L), actions (B, H, 2), valid (B, H)."""
        index = np.asarray(index)
        return {
            "image": self.images(index, size, dtype),
            "state": self.position[index],
            "tokens": instruction_tokens(self.scenario, len(index)),
            "actions": self.chunk[index],
            "valid": self.valid[index],
        }

    def batches(self, batch_size: int, seed: int = 0, size: int = 64, shuffle: bool = True,
                drop_last: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches in a seed-determined order (images rendered on the fly)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle \
            else np.arange(len(self))
        stop = len(order) - batch_size + 1 if drop_last else len(order)
        for i in range(0, max(stop, 0), batch_size):
            yield self.batch(order[i:i + batch_size], size)


def generate(scenario: str, seeds, *, horizon: int = CHUNK,
             expert: ExpertConfig = ExpertConfig(), noise: bool = True,
             labels: LabelMode = "executed") -> ExpertDataset:
    """Expert dataset of `scenario` on episodes `seeds` (deterministic, vectorised).

    Every tick 0..T-1 of every episode is one sample. With `noise`, the episodes the expert
    draws as noisy (~`expert.noise_fraction`) execute expert + noise; labels are always clean.
    `labels` picks the chunk labels (module docstring): "executed" or "replan".
    """
    check_scenario(scenario)
    if horizon < 1:
        raise ValueError(f"generate: horizon must be >= 1, got {horizon}")
    if labels not in LABEL_MODES:
        raise ValueError(f"generate: labels must be one of {LABEL_MODES}, got {labels!r}")
    world = WorldConfig(scenario=scenario)
    r = rollout_expert(world, seeds, expert, noise=noise)
    ep = r.episodes
    n, t = ep.n, world.episode_ticks
    episode = np.repeat(np.arange(n), t)
    tick = np.tile(np.arange(t), n)
    position = r.positions[:, :-1].reshape(-1, 2)
    prev = r.prev_actions.reshape(-1, 2)
    goal = ep.goal_traj[:, :-1].reshape(-1, 2)
    wall = None
    if ep.wall_centre is not None:
        wall = Wall(ep.wall_centre[episode], ep.wall_axis[episode], tick >= ep.t_perturb[episode])
    if labels == "replan":
        chunk, _ = expert_continuation(position, prev, goal, horizon, expert, wall,
                                       r.draws.side[episode])
    else:
        chunk = executed_chunks(r, horizon, expert)[episode, tick]
    valid = tick[:, None] + np.arange(horizon)[None, :] < t
    return ExpertDataset(scenario, ep, episode, tick, position.astype(np.float32),
                         prev.astype(np.float32), goal.astype(np.float32),
                         chunk.astype(np.float32), valid, r.draws.noisy[episode])


def executed_chunks(r, horizon: int, expert: ExpertConfig = ExpertConfig()) -> np.ndarray:
    """(N, T, H, 2) "executed" chunk labels of expert rollouts `r`: row [n, t, k] is the clean
    command of episode n at tick t + k, continued past the end by the expert's plan from the
    final state (goal and wall as they stand at T)."""
    ep = r.episodes
    n, t = ep.n, r.labels.shape[1]
    wall = None if ep.wall_centre is None else ep.wall(np.full(n, t))
    tail, _ = expert_continuation(r.positions[:, -1], r.actions[:, -1], ep.goal_at(np.full(n, t)),
                                  horizon, expert, wall, r.draws.side)
    seq = np.concatenate([r.labels, tail], axis=1)                       # (N, T + H, 2)
    idx = np.arange(t)[:, None] + np.arange(horizon)[None, :]            # (T, H)
    return seq[:, idx]


class ScenarioMix:
    """Several scenarios' expert datasets trained on as one (each keeps its own instruction).

    Sample i of the mix is sample i - offset[j] of part j, parts in the order given. It offers
    what training and probing read from an `ExpertDataset`: len, batch(index, size) and the
    aligned arrays position, goal, chunk, valid, tick (concatenated once, on first use).
    """

    def __init__(self, parts: Sequence[ExpertDataset]) -> None:
        parts = tuple(parts)
        if not parts:
            raise ValueError("ScenarioMix needs at least one dataset")
        scenarios = [p.scenario for p in parts]
        if len(set(scenarios)) != len(scenarios):
            raise ValueError(f"ScenarioMix: scenarios repeat in {scenarios}")
        if len({p.horizon for p in parts}) != 1:
            raise ValueError(f"ScenarioMix: chunk lengths differ: {[p.horizon for p in parts]}")
        self.parts = parts
        self.scenario = "+".join(scenarios)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def horizon(self) -> int:
        return self.parts[0].horizon

    def _cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in self.parts])

    position = cached_property(lambda self: self._cat("position"))
    goal = cached_property(lambda self: self._cat("goal"))
    chunk = cached_property(lambda self: self._cat("chunk"))
    valid = cached_property(lambda self: self._cat("valid"))
    tick = cached_property(lambda self: self._cat("tick"))

    def locate(self, index) -> tuple[np.ndarray, np.ndarray]:
        """Mix indices -> (part, index within that part), both (B,)."""
        index = np.asarray(index, np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"ScenarioMix index out of range [0, {len(self)})")
        part = np.searchsorted(self.offsets, index, side="right") - 1
        return part, index - self.offsets[part]

    def batch(self, index: np.ndarray, size: int = 64,
              dtype: ImageDtype = "uint8") -> dict[str, np.ndarray]:
        """Like `ExpertDataset.batch`, rows in the order of `index`."""
        part, local = self.locate(index)
        out: dict[str, np.ndarray] = {}
        for j in np.unique(part):
            rows = np.flatnonzero(part == j)
            b = self.parts[j].batch(local[rows], size, dtype)
            for k, v in b.items():
                if k not in out:
                    out[k] = np.empty((len(part), *v.shape[1:]), v.dtype)
                out[k][rows] = v
        return out


def generate_mix(scenarios: Sequence[str], seeds, **kwargs) -> ExpertDataset | ScenarioMix:
    """`generate` for one scenario, or a `ScenarioMix` of each scenario on the same seeds
    (episode randomness depends on the scenario, so these are different episodes)."""
    scenarios = tuple(scenarios)
    if len(scenarios) == 1:
        return generate(scenarios[0], seeds, **kwargs)
    return ScenarioMix([generate(s, seeds, **kwargs) for s in scenarios])


def prefix_predictability(chunks: np.ndarray, prefix_length: int,
                          valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """How well the last prefix action a[p-1] predicts a[k] for k >= p, per chunk index.

    This is what makes copying tempting: if a[p-1] already explains most of a[k], a model
    conditioned on the prefix can score well without looking at the image.
    Returns k (H - p,), r2 = 1 - sum|a_k - a_{p-1}|^2 / sum|a_k - mean a_k|^2 (pooled over
    both axes), and cosine = mean cos(a_k, a_{p-1}) over rows where both are non-zero.
    """
    chunks = np.asarray(chunks, np.float64)
    if chunks.ndim != 3 or chunks.shape[-1] != 2:
        raise ValueError(f"chunks must have shape (M, H, 2), got {chunks.shape}")
    m, h, _ = chunks.shape
    if not 1 <= prefix_length < h:
        raise ValueError(f"prefix_length must be in [1, {h - 1}], got {prefix_length}")
    valid = np.ones((m, h), bool) if valid is None else np.asarray(valid, bool)
    last = chunks[:, prefix_length - 1]
    ks = np.arange(prefix_length, h)
    r2, cosine = np.empty(len(ks)), np.empty(len(ks))
    for i, k in enumerate(ks):
        rows = valid[:, k] & valid[:, prefix_length - 1]
        a, b = chunks[rows, k], last[rows]
        ss_res = ((a - b) ** 2).sum()
        ss_tot = ((a - a.mean(0)) ** 2).sum()
        r2[i] = 1.0 - ss_res / ss_tot if ss_tot > 0 else np.nan
        na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
        ok = (na > 1e-9) & (nb > 1e-9)
        cosine[i] = ((a[ok] * b[ok]).sum(-1) / (na[ok] * nb[ok])).mean() if ok.any() else np.nan
    return {"k": ks, "r2": r2, "cosine": cosine}


@dataclass(frozen=True)
class ConflictCases:
    """Conflict-test inputs: the state at the perturbation tick of clean expert episodes.

    The image at `tick` shows the new scene; `stale_chunk` is the expert's plan for the scene
    just before the perturbation (old goal, no wall) from the same state, so its first p rows
    are the committed prefix a copying policy would extend; `fresh_chunk` is the expert's plan
    for the scene now visible. All arrays (M, ...) with M = number of episodes.
    """

    episodes: Episodes
    tick: np.ndarray
    position: np.ndarray
    prev_action: np.ndarray
    old_goal: np.ndarray
    new_goal: np.ndarray
    stale_chunk: np.ndarray
    fresh_chunk: np.ndarray

    def images(self, size: int = 64) -> np.ndarray:
        return render(self.episodes, self.tick, self.position, size)


def conflict_cases(scenario: str, seeds, horizon: int = CHUNK,
                   expert: ExpertConfig = ExpertConfig()) -> ConflictCases:
    """Conflict-test states for `seeds` (clean expert, state at each episode's t_perturb)."""
    r = rollout_expert(WorldConfig(scenario=scenario), seeds, expert, noise=False)
    ep = r.episodes
    rows, tp = np.arange(ep.n), ep.t_perturb
    pos, prev = r.positions[rows, tp], r.prev_actions[rows, tp]
    stale_wall = fresh_wall = None
    if ep.wall_centre is not None:
        stale_wall = Wall(ep.wall_centre, ep.wall_axis, np.zeros(ep.n, bool))
        fresh_wall = Wall(ep.wall_centre, ep.wall_axis, np.ones(ep.n, bool))
    stale, _ = expert_continuation(pos, prev, ep.old_goal, horizon, expert, stale_wall,
                                   r.draws.side)
    fresh, _ = expert_continuation(pos, prev, ep.goal_at(tp), horizon, expert, fresh_wall,
                                   r.draws.side)
    return ConflictCases(ep, tp, pos, prev, ep.old_goal, ep.new_goal, stale, fresh)
