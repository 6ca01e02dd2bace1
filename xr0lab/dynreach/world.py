"""DynReach world: a point agent in the unit square, batched over N episodes in numpy.

Axis legend: N episodes (environments), T ticks (episode_ticks = 120), S image side in pixels,
K alternative reaction goals, 2 = (x, y).

Conventions (benchmark spec section 1):
- One tick is 1/30 s. An episode has T actions a_0..a_{T-1} and positions x_0..x_T;
  x_{t+1} = clip(x_t + a_t, 0, 1) after a_t is clipped to |a_t| <= v_max. We clip the *norm*
  (direction preserved) rather than each axis, so a command never changes direction on the way
  to the world.
- The observation at tick t shows the state at tick t. A perturbation scheduled at t_p is in
  the scenario state from tick t_p on, so the first observation that can reveal it is the one
  captured at t_p: it is visible only in fresh pixels (never in the proprioception or the
  instruction).
- Every episode's randomness comes from its own seed (`episode_rng`), so episode i is identical
  whatever batch it is simulated in.
- Cup mode: spill_t = max(0, |a_t - a_{t-1}| - kappa) with a_{-1} = 0 (episodes start at rest);
  the episode fails once the accumulated spill exceeds `spill_threshold`.
- An episode *terminates* at the first of: success (within `success_radius` of the goal at a
  tick >= t_p; S4: >= t_p + 15), spill failure, or time-out. In episodic mode the simulation
  keeps stepping after termination (so trajectories stay full length for plots) but the
  outcome is frozen; in continuous-reset mode the slot starts its next episode on the
  following tick.

Pixel convention: pixel (row i, column j) has its centre at x = (j + 0.5) / S,
y = 1 - (i + 0.5) / S, i.e. images are drawn with y up, as `imshow` shows them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Scenario = Literal["S1", "S2", "S3", "S4", "S1E"]
# S1E is S1 with an early jump, while the agent is still under way (an addition to the spec's
# S1-S4, for policies trained on S1: same scene, same instruction, only the timing differs).
SCENARIOS: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S1E")

V_MAX = 0.03
EPISODE_TICKS = 120
# 1.4 x the expert's largest |Δa| over clean expert rollouts of all four scenarios
# (`xr0lab.dynreach.expert.measure_kappa`, pinned by a test). The bound is the expert's per-axis
# rate limit on both axes at once: 1.4 * 0.006 * sqrt(2) = 0.01188.
DEFAULT_KAPPA = 0.011879393923933998
# One abrupt 90-degree switch at full speed (|Δa| = 0.042) spills 0.03; a reversal spills 0.048.
DEFAULT_SPILL_THRESHOLD = 0.05

# Instruction vocabulary: tiny and fixed so token ids never change between runs.
VOCAB: tuple[str, ...] = ("<pad>", "reach", "the", "target", "go", "to", "matching", "lamp",
                          "around", "wall", "follow", "moving")
TOKEN_IDS: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
INSTRUCTION_LENGTH = 8
INSTRUCTIONS: dict[str, str] = {
    "S1": "reach the target",
    "S2": "go to the target matching the lamp",  # constant: the goal changes only in pixels
    "S3": "reach the target around the wall",
    "S4": "follow the moving target",
    "S1E": "reach the target",  # S1's instruction: the variant differs only in timing
}

# Scene geometry.
AGENT_RADIUS = 0.035
TARGET_RADIUS = 0.045
LAMP_CENTRE = (0.06, 0.94)  # top-left corner
LAMP_RADIUS = 0.05
WALL_HALF_LENGTH = 0.18
WALL_HALF_THICKNESS = 0.02  # > v_max / 2 so one step can never jump across the wall
_LO, _HI = 0.1, 0.9  # sampled positions stay clear of the borders so blobs are fully visible

BACKGROUND = np.array([0.08, 0.08, 0.10], np.float32)
AGENT_COLOUR = np.array([1.0, 1.0, 1.0], np.float32)
TARGET_COLOUR = np.array([0.15, 0.85, 0.25], np.float32)
WALL_COLOUR = np.array([0.75, 0.55, 0.20], np.float32)
CUE_COLOURS = np.array([[0.95, 0.15, 0.15], [0.20, 0.35, 1.0]], np.float32)  # S2: red, blue

_SALT = {"world": 0x5EED_0001, "expert": 0x5EED_0002}
_SCENARIO_ID = {s: i + 1 for i, s in enumerate(SCENARIOS)}


def episode_rng(seed: int, scenario: str,
                stream: Literal["world", "expert"]) -> np.random.Generator:
    """The generator owned by one episode: a function of (seed, scenario, stream) only."""
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence([int(seed), _SCENARIO_ID[scenario], _SALT[stream]])))


def tokenize(text: str, length: int = INSTRUCTION_LENGTH) -> np.ndarray:
    """Instruction text -> int64 token ids, right-padded with 0 (`<pad>`)."""
    words = text.lower().split()
    unknown = [w for w in words if w not in TOKEN_IDS]
    if unknown:
        raise ValueError(f"tokenize: words {unknown} are not in the DynReach vocabulary {VOCAB}")
    if len(words) > length:
        raise ValueError(f"tokenize: {len(words)} words exceed the instruction length {length}")
    ids = np.zeros(length, np.int64)
    ids[:len(words)] = [TOKEN_IDS[w] for w in words]
    return ids


def instruction_tokens(scenario: str, n: int) -> np.ndarray:
    """(n, INSTRUCTION_LENGTH) int64: the scenario's constant instruction, one row per episode."""
    return np.broadcast_to(tokenize(INSTRUCTIONS[scenario]), (n, INSTRUCTION_LENGTH)).copy()


def clip_norm(actions: np.ndarray, v_max: float = V_MAX) -> np.ndarray:
    """Scale each 2-D command down to norm <= v_max, keeping its direction.

    Commands already within the limit pass unchanged (bit for bit), so clipping twice -- once
    by the expert, once by the world -- is harmless.
    """
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    # The tolerance absorbs the rounding of a command that was itself just scaled to v_max.
    over = norm > v_max * (1.0 + 1e-9)
    return np.where(over, actions * (v_max / np.maximum(norm, 1e-12)), actions)


def spill_increment(action: np.ndarray, prev_action: np.ndarray, kappa: float) -> np.ndarray:
    """Per-tick spill max(0, |a_t - a_{t-1}| - kappa) over the last axis."""
    return np.maximum(0.0, np.linalg.norm(action - prev_action, axis=-1) - kappa)


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")


def as_scenarios(scenario: str | Sequence[str]) -> tuple[str, ...]:
    """A scenario name or a sequence of them -> a non-empty tuple of distinct known names."""
    out = (scenario,) if isinstance(scenario, str) else tuple(scenario)
    bad = [s for s in out if s not in SCENARIOS]
    if not out or bad or len(set(out)) != len(out):
        raise ValueError(f"scenario must be one of {SCENARIOS} or a tuple of distinct ones, "
                         f"got {scenario!r}")
    return out


# --------------------------------------------------------------------------------------------
# Episodes: everything that is random about an episode, drawn once from its seed.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wall:
    """Per-row wall geometry: centre (M, 2), unit axis along the wall (M, 2), on (M,) bool."""

    centre: np.ndarray
    axis: np.ndarray
    on: np.ndarray


@dataclass(frozen=True)
class Episodes:
    """A batch of N episode scripts. The scenario state at tick t is a pure function of these.

    goal_traj (N, T+1, 2): the goal at each tick (what success and the expert refer to).
    old_goal / new_goal (N, 2): the goal just before / at the perturbation tick.
    t_perturb (N,): first tick whose observation shows the perturbation.
    success_from (N,): first tick at which reaching the goal counts (t_perturb, except S4).
    S2 only: targets (N, 2, 2) (red, blue) and lamp (N, T+1) colour index at each tick.
    S3 only: wall_centre (N, 2) and wall_axis (N, 2) (unit vector along the wall); the wall
    exists from t_perturb on.
    """

    scenario: str
    seeds: np.ndarray
    start: np.ndarray
    goal_traj: np.ndarray
    old_goal: np.ndarray
    new_goal: np.ndarray
    t_perturb: np.ndarray
    success_from: np.ndarray
    targets: np.ndarray | None = None
    lamp: np.ndarray | None = None
    wall_centre: np.ndarray | None = None
    wall_axis: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def ticks(self) -> int:
        return self.goal_traj.shape[1] - 1

    def take(self, index: np.ndarray) -> "Episodes":
        """Episodes at `index` (any numpy index); fields that are None stay None."""
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name)[index]
            for f in dataclasses.fields(self)
            if f.name != "scenario" and getattr(self, f.name) is not None})

    def goal_at(self, ticks: np.ndarray) -> np.ndarray:
        """(N, 2) goal at per-episode ticks (N,)."""
        return self.goal_traj[np.arange(self.n), np.minimum(ticks, self.ticks)]

    def wall_on(self, ticks: np.ndarray) -> np.ndarray:
        """(N,) whether the wall exists at per-episode ticks (always False outside S3)."""
        if self.wall_centre is None:
            return np.zeros(self.n, bool)
        return np.asarray(ticks) >= self.t_perturb

    def wall(self, ticks: np.ndarray) -> Wall | None:
        """The S3 wall at per-episode ticks (None in the other scenarios)."""
        if self.wall_centre is None:
            return None
        return Wall(self.wall_centre, self.wall_axis, self.wall_on(ticks))

    def reaction_goals(self) -> np.ndarray:
        """(N, K, 2) points the reaction-time metric accepts as "the new goal direction".

        S3 has two: the expert's two detour waypoints (left and right of the wall), since a
        reaction toward either is correct. S1, S2 have one, the new goal. S4 gets the target's
        position at the reversal, a crude stand-in: RT/ERT are designed for S1-S3; for S4 use
        tracking error and success.
        """
        if self.wall_centre is None:
            return self.new_goal[:, None, :]
        from xr0lab.dynreach.expert import ExpertConfig, detour_waypoints  # avoid an import cycle
        return detour_waypoints(self.wall_centre, self.wall_axis, ExpertConfig().detour_clearance)


def sample_episodes(scenario: str, seeds: Sequence[int] | np.ndarray,
                    ticks: int = EPISODE_TICKS) -> Episodes:
    """Draw the episode scripts for `seeds` (each from its own generator)."""
    _check_scenario(scenario)
    seeds = np.asarray(seeds, np.int64).reshape(-1)
    if (seeds < 0).any():
        raise ValueError("sample_episodes: episode seeds must be non-negative integers")
    if ticks < 70:
        raise ValueError(f"ticks must be >= 70 so every perturbation tick fits, got {ticks}")
    # 64 rejection-sampling candidates x 12 uniforms per episode, drawn in one call, so the
    # geometry below is vectorised across episodes while each episode stays seed-determined.
    u = np.stack([episode_rng(s, scenario, "world").random((64, 12)) for s in seeds]) \
        if len(seeds) else np.zeros((0, 64, 12))
    return {"S1": _sample_s1, "S2": _sample_s2, "S3": _sample_s3, "S4": _sample_s4,
            "S1E": _sample_s1e}[scenario](seeds, u, ticks)


def _first_valid(ok: np.ndarray, scenario: str) -> np.ndarray:
    """Index of the first accepted candidate per episode (N,)."""
    if not ok.any(axis=1).all():
        raise RuntimeError(f"{scenario}: rejection sampling found no valid layout in 64 "
                           "candidates; the geometry constraints are too tight")
    return ok.argmax(axis=1)


def _pick(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[np.arange(len(idx)), idx]


def _ramp(a: float, b: float, u: np.ndarray) -> np.ndarray:
    return a + (b - a) * u


def _perturb_tick(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniform integer in [lo, hi] from a uniform in [0, 1)."""
    return (lo + np.floor(u * (hi - lo + 1))).astype(np.int64)


def _step_goal(before: np.ndarray, after: np.ndarray, t_p: np.ndarray, ticks: int) -> np.ndarray:
    t = np.arange(ticks + 1)
    return np.where((t[None, :] >= t_p[:, None])[..., None], after[:, None], before[:, None])


def _sample_s1(seeds, u, ticks, name: str = "S1", window: tuple[int, int] = (25, 60),
               min_first_leg: float = 0.3):
    start, g0, g1 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4]), \
        _ramp(_LO, _HI, u[..., 4:6])
    ok = ((np.linalg.norm(g0 - start, axis=-1) >= min_first_leg)
          & (np.linalg.norm(g1 - g0, axis=-1) >= 0.4))
    k = _first_valid(ok, name)
    start, g0, g1 = _pick(start, k), _pick(g0, k), _pick(g1, k)
    t_p = _perturb_tick(u[:, 0, 6], *window)
    return Episodes(name, seeds, start, _step_goal(g0, g1, t_p, ticks), g0, g1, t_p, t_p)


# S1E timing: the target jumps at t_p in [6, 12] and the first leg is >= 0.45 long. The expert
# reaches v_max after 5 ticks and covers at most ~0.3 by tick 12, so at the jump it is still
# >= 0.15 from the old goal, outside its 0.1 slowing radius: moving at full speed.
S1E_PERTURB_TICKS = (6, 12)


def _sample_s1e(seeds, u, ticks):
    return _sample_s1(seeds, u, ticks, "S1E", S1E_PERTURB_TICKS, min_first_leg=0.45)


def _sample_s2(seeds, u, ticks):
    start, ta, tb = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4]), \
        _ramp(_LO, _HI, u[..., 4:6])
    lamp = np.array(LAMP_CENTRE)
    ok = ((np.linalg.norm(ta - tb, axis=-1) >= 0.4)
          & (np.linalg.norm(start - ta, axis=-1) >= 0.25)
          & (np.linalg.norm(start - tb, axis=-1) >= 0.25)
          & (np.linalg.norm(ta - lamp, axis=-1) >= 0.18)
          & (np.linalg.norm(tb - lamp, axis=-1) >= 0.18)
          & (np.linalg.norm(start - lamp, axis=-1) >= 0.18))
    k = _first_valid(ok, "S2")
    start, targets = _pick(start, k), np.stack([_pick(ta, k), _pick(tb, k)], axis=1)
    c0 = (u[:, 0, 6] < 0.5).astype(np.int64)
    t_p = _perturb_tick(u[:, 0, 7], 25, 60)
    t = np.arange(ticks + 1)
    lamp_traj = np.where(t[None, :] >= t_p[:, None], 1 - c0[:, None], c0[:, None])
    n = np.arange(len(seeds))
    old, new = targets[n, c0], targets[n, 1 - c0]
    return Episodes("S2", seeds, start, _step_goal(old, new, t_p, ticks), old, new, t_p, t_p,
                    targets=targets, lamp=lamp_traj)


# S3 timing: the wall must appear while the agent is still on its way. The agent starts at
# least 0.6 from the target and the wall sits at 55% of the way (>= 0.33 from the start), so
# any policy can have travelled at most v_max * 10 = 0.30 by t_p <= 10: it is always on the
# start side of the wall when it appears. (S1's [25, 60] would come after arrival.)
S3_PERTURB_TICKS = (6, 10)


def _sample_s3(seeds, u, ticks):
    from xr0lab.dynreach.expert import ExpertConfig
    clearance = ExpertConfig().detour_clearance
    start, goal = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    d = goal - start
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    along = d / np.maximum(dist, 1e-9)
    axis = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    # A small offset along the wall keeps the straight line blocked but breaks exact symmetry.
    centre = start + 0.55 * d + _ramp(-0.04, 0.04, u[..., 4:5]) * axis
    ends = centre[..., None, :] + np.array([-1.0, 1.0])[:, None] * \
        (WALL_HALF_LENGTH + clearance) * axis[..., None, :]
    ok = ((dist[..., 0] >= 0.6) & (dist[..., 0] <= 1.0)
          & np.all((ends > 0.04) & (ends < 0.96), axis=(-1, -2)))
    k = _first_valid(ok, "S3")
    start, goal, centre, axis = _pick(start, k), _pick(goal, k), _pick(centre, k), _pick(axis, k)
    t_p = _perturb_tick(u[:, 0, 5], *S3_PERTURB_TICKS)
    goal_traj = np.broadcast_to(goal[:, None], (len(seeds), ticks + 1, 2)).copy()
    return Episodes("S3", seeds, start, goal_traj, goal, goal, t_p, t_p,
                    wall_centre=centre, wall_axis=axis)


S4_SPEED = 0.008
# A pursuer that sits on the target when it reverses is still within reach a tick later, so
# S4 counts success only once the agent is with the target 15 ticks after the first reversal.
S4_SETTLE_TICKS = 15


def _sample_s4(seeds, u, ticks):
    start, p0 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    ok = np.linalg.norm(p0 - start, axis=-1) >= 0.3
    k = _first_valid(ok, "S4")
    start, p0 = _pick(start, k), _pick(p0, k)
    ang = 2 * np.pi * u[:, 0, 4]
    vel = S4_SPEED * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    t_p = _perturb_tick(u[:, 0, 5], 25, 60)
    # Later reversals every 20-40 ticks; at most 4 more fit in 120 ticks.
    gaps = 20 + np.floor(u[:, 1, :4] * 21).astype(np.int64)
    rev = np.concatenate([t_p[:, None], t_p[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    traj = np.empty((len(seeds), ticks + 1, 2))
    pos = p0.copy()
    for t in range(ticks + 1):
        vel = np.where((rev == t).any(axis=1)[:, None], -vel, vel)
        traj[:, t] = pos
        pos = pos + vel
        # Bounce off the sampling box so the target never leaves the visible area.
        low, high = pos < _LO, pos > _HI
        pos = np.where(low, 2 * _LO - pos, np.where(high, 2 * _HI - pos, pos))
        vel = np.where(low | high, -vel, vel)
    n = np.arange(len(seeds))
    return Episodes("S4", seeds, start, traj, traj[n, t_p - 1], traj[n, t_p], t_p,
                    t_p + S4_SETTLE_TICKS)


# --------------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------------

def wall_frame(points: np.ndarray, centre: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Coordinates (u along the wall, v across it) of points (..., 2) in the wall's frame."""
    rel = points - centre
    return np.stack([rel[..., 0] * axis[..., 0] + rel[..., 1] * axis[..., 1],
                     -rel[..., 0] * axis[..., 1] + rel[..., 1] * axis[..., 0]], axis=-1)


def inside_wall(points: np.ndarray, centre: np.ndarray, axis: np.ndarray,
                margin: float = 0.0) -> np.ndarray:
    uv = wall_frame(points, centre, axis)
    return ((np.abs(uv[..., 0]) <= WALL_HALF_LENGTH + margin)
            & (np.abs(uv[..., 1]) <= WALL_HALF_THICKNESS + margin))


def advance(positions: np.ndarray, actions: np.ndarray, wall: Wall | None = None) -> np.ndarray:
    """x_{t+1} from x_t and an already-clipped a_t.

    Collision is kept deliberately simple: a step whose end point would lie inside an active
    wall is rejected (the agent stays put). The wall is thicker than one maximal step, so no
    step can tunnel through it; grazing a corner is allowed.
    """
    new = np.clip(positions + actions, 0.0, 1.0)
    if wall is not None:
        blocked = wall.on & inside_wall(new, wall.centre, wall.axis)
        new = np.where(blocked[..., None], positions, new)
    return new


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c, 1.0 - c  # x of columns, y of rows


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composite `colour` ((3,) or (N, 3)) over img (N, S, S, 3) in place."""
    colour = np.broadcast_to(np.asarray(colour, np.float32), (img.shape[0], 3))
    img += alpha[..., None] * (colour[:, None, None, :] - img)


def _disc_alpha(centre: np.ndarray, radius: float, size: int) -> np.ndarray:
    """(N, S, S) coverage of discs: a one-pixel linear ramp across the rim (anti-aliasing)."""
    xs, ys = _grid(size)
    c = centre.astype(np.float32)
    dx2 = (xs[None, None, :] - c[:, 0, None, None]) ** 2   # (N, 1, S)
    dy2 = (ys[None, :, None] - c[:, 1, None, None]) ** 2   # (N, S, 1)
    return np.clip((radius - np.sqrt(dx2 + dy2)) * size + 0.5, 0.0, 1.0)


def _wall_alpha(centre: np.ndarray, axis: np.ndarray, size: int) -> np.ndarray:
    xs, ys = _grid(size)
    c, e = centre.astype(np.float32), axis.astype(np.float32)
    px = xs[None, None, :] - c[:, 0, None, None]
    py = ys[None, :, None] - c[:, 1, None, None]
    u = px * e[:, 0, None, None] + py * e[:, 1, None, None]
    v = -px * e[:, 1, None, None] + py * e[:, 0, None, None]
    qx, qy = np.abs(u) - WALL_HALF_LENGTH, np.abs(v) - WALL_HALF_THICKNESS
    sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    return np.clip(0.5 - sdf * size, 0.0, 1.0)


def render(episodes: Episodes, ticks: np.ndarray, positions: np.ndarray, size: int = 64,
           dtype: Literal["uint8", "float32"] = "uint8") -> np.ndarray:
    """Images (N, S, S, 3) of each episode at its own tick with the agent at `positions`.

    uint8 in [0, 255] or float32 in [0, 1]. Draw order: targets, lamp, wall, agent on top.
    """
    if size < 8:
        raise ValueError(f"render: size must be >= 8 pixels, got {size}")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"render: dtype must be 'uint8' or 'float32', got {dtype!r}")
    n = episodes.n
    ticks = np.broadcast_to(np.asarray(ticks, np.int64), (n,))
    positions = np.asarray(positions, np.float32)
    if positions.shape != (n, 2):
        raise ValueError(f"render: positions must have shape ({n}, 2), got {positions.shape}")
    img = np.empty((n, size, size, 3), np.float32)
    img[:] = BACKGROUND
    rows = np.arange(n)
    if episodes.scenario == "S2":
        for j in range(2):
            _paint(img, _disc_alpha(episodes.targets[:, j], TARGET_RADIUS, size), CUE_COLOURS[j])
        lamp = np.broadcast_to(np.array(LAMP_CENTRE), (n, 2))
        colour = CUE_COLOURS[episodes.lamp[rows, np.minimum(ticks, episodes.ticks)]]
        _paint(img, _disc_alpha(lamp, LAMP_RADIUS, size), colour)
    else:
        _paint(img, _disc_alpha(episodes.goal_at(ticks), TARGET_RADIUS, size), TARGET_COLOUR)
    if episodes.wall_centre is not None:
        on = episodes.wall_on(ticks)
        if on.any():
            alpha = _wall_alpha(episodes.wall_centre, episodes.wall_axis, size)
            _paint(img, alpha * on[:, None, None], WALL_COLOUR)
    _paint(img, _disc_alpha(positions, AGENT_RADIUS, size), AGENT_COLOUR)
    if dtype == "float32":
        return img
    return np.round(img * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The batched environment
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldConfig:
    """One DynReach setting. `cup` turns on the spill failure; `kappa` is a parameter so the
    full run can sweep it (the default is 1.4 x the expert's largest |Δa|)."""

    scenario: Scenario = "S1"
    cup: bool = False
    kappa: float = DEFAULT_KAPPA
    spill_threshold: float = DEFAULT_SPILL_THRESHOLD
    v_max: float = V_MAX
    episode_ticks: int = EPISODE_TICKS
    success_radius: float = 0.05
    image_size: int = 64
    image_dtype: Literal["uint8", "float32"] = "uint8"
    # Off by default: either would give the policy a second channel to copy its own past
    # actions from, besides the prefix.
    observe_velocity: bool = False
    observe_last_action: bool = False

    def __post_init__(self) -> None:
        _check_scenario(self.scenario)
        if self.kappa < 0 or self.spill_threshold <= 0:
            raise ValueError(f"WorldConfig: kappa must be >= 0 and spill_threshold > 0, got "
                             f"kappa={self.kappa}, spill_threshold={self.spill_threshold}")
        if self.image_size not in (32, 64):
            raise ValueError(f"WorldConfig.image_size must be 64 (default) or 32 (quick), got "
                             f"{self.image_size}")
        if self.episode_ticks < 70:
            raise ValueError(f"WorldConfig.episode_ticks must be >= 70, got {self.episode_ticks}")


class DynReach:
    """N DynReach episodes stepped together.

    Episodic mode: `reset(seeds)` then `step` T times; outcomes are in `success_tick`,
    `fail_tick`, and full trajectories in `positions` (N, T+1, 2) / `actions` (N, T, 2).
    Continuous-reset mode (`continuous=True`): each slot runs episodes back to back for as long
    as it is stepped, the k-th episode of slot j using seed `continuous_seed(seeds[j], k)`;
    `step` reports which slots reset so an executor can drop their committed chunks.
    """

    def __init__(self, config: WorldConfig = WorldConfig(), *, continuous: bool = False):
        self.config = config
        self.continuous = continuous
        self.episodes: Episodes | None = None

    # -- episode bookkeeping ------------------------------------------------------------------
    def reset(self, seeds: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        self.slot_seeds = np.asarray(seeds, np.int64).reshape(-1)
        n = len(self.slot_seeds)
        if n == 0:
            raise ValueError("DynReach.reset: seeds must hold at least one episode seed")
        self.episodes = sample_episodes(cfg.scenario, self.slot_seeds, cfg.episode_ticks)
        self.episode_index = np.zeros(n, np.int64)
        self.pos = self.episodes.start.copy()
        self.prev_action = np.zeros((n, 2))
        self.prev_pos = self.pos.copy()
        self.tick = np.zeros(n, np.int64)
        self.spill = np.zeros(n)
        self.success_tick = np.full(n, -1, np.int64)
        self.fail_tick = np.full(n, -1, np.int64)
        self.global_tick = 0
        self.completed = {"success": np.zeros(n, np.int64), "episodes": np.zeros(n, np.int64)}
        if not self.continuous:
            self.positions = np.empty((n, cfg.episode_ticks + 1, 2))
            self.positions[:, 0] = self.pos
            self.actions = np.zeros((n, cfg.episode_ticks, 2))
            self.spills = np.zeros((n, cfg.episode_ticks))
        return self.observe()

    @property
    def terminated(self) -> np.ndarray:
        return (self.success_tick >= 0) | (self.fail_tick >= 0)

    @property
    def success(self) -> np.ndarray:
        return self.success_tick >= 0

    def observe(self, size: int | None = None) -> dict[str, np.ndarray]:
        """The observation at the current tick: image, proprioception (positions), tokens."""
        if self.episodes is None:
            raise RuntimeError("DynReach.observe called before reset(seeds)")
        cfg = self.config
        n = self.episodes.n
        obs = {
            "image": render(self.episodes, self.tick, self.pos, size or cfg.image_size,
                            cfg.image_dtype),
            "state": self.pos.astype(np.float32),
            "tokens": instruction_tokens(cfg.scenario, n),
            "tick": self.tick.copy(),
        }
        if cfg.observe_velocity:
            obs["velocity"] = (self.pos - self.prev_pos).astype(np.float32)
        if cfg.observe_last_action:
            obs["last_action"] = self.prev_action.astype(np.float32)
        return obs

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Apply one tick of commands (N, 2). Returns per-slot events of this tick:
        `succeeded`, `failed` (spill), and in continuous mode `reset` (slot starts a new
        episode on the next tick)."""
        if self.episodes is None:
            raise RuntimeError("DynReach.step called before reset(seeds)")
        cfg, ep = self.config, self.episodes
        actions = np.asarray(actions, np.float64)
        if actions.shape != (ep.n, 2):
            raise ValueError(f"DynReach.step: actions must have shape ({ep.n}, 2), got "
                             f"{actions.shape}")
        if not self.continuous and self.global_tick >= cfg.episode_ticks:
            raise RuntimeError(f"DynReach.step: the episode has {cfg.episode_ticks} ticks; "
                               "call reset(seeds) for new episodes")
        a = clip_norm(np.nan_to_num(actions), cfg.v_max)
        spill = spill_increment(a, self.prev_action, cfg.kappa)
        new_pos = advance(self.pos, a, ep.wall(self.tick))
        live = ~self.terminated
        self.spill += np.where(live, spill, 0.0)
        self.prev_pos, self.pos, self.prev_action = self.pos, new_pos, a
        self.tick = self.tick + 1
        failed = live & cfg.cup & (self.spill > cfg.spill_threshold)
        self.fail_tick[failed] = self.tick[failed]
        near = np.linalg.norm(new_pos - ep.goal_at(self.tick), axis=-1) <= cfg.success_radius
        succeeded = live & ~failed & near & (self.tick >= ep.success_from)
        self.success_tick[succeeded] = self.tick[succeeded]
        if not self.continuous:
            t = self.global_tick
            self.actions[:, t], self.spills[:, t], self.positions[:, t + 1] = a, spill, new_pos
        self.global_tick += 1
        events = {"succeeded": succeeded, "failed": failed}
        if self.continuous:
            done = self.terminated | (self.tick >= cfg.episode_ticks)
            self.completed["success"] += succeeded
            self.completed["episodes"] += done
            if done.any():
                self._restart(np.flatnonzero(done))
            events["reset"] = done
        return events

    def _restart(self, slots: np.ndarray) -> None:
        self.episode_index[slots] += 1
        seeds = [continuous_seed(s, k) for s, k in
                 zip(self.slot_seeds[slots], self.episode_index[slots])]
        fresh = sample_episodes(self.config.scenario, seeds, self.config.episode_ticks)
        ep = self.episodes
        self.episodes = dataclasses.replace(ep, **{
            f.name: _scatter(getattr(ep, f.name), slots, getattr(fresh, f.name))
            for f in dataclasses.fields(ep)
            if f.name != "scenario" and getattr(ep, f.name) is not None})
        self.pos[slots] = fresh.start
        self.prev_pos[slots] = fresh.start
        self.prev_action[slots] = 0.0  # every episode starts at rest, as in episodic mode
        self.tick[slots] = 0
        self.spill[slots] = 0.0
        self.success_tick[slots] = -1
        self.fail_tick[slots] = -1

    def throughput(self) -> float:
        """Successes per 1,000 ticks per slot so far (continuous-reset mode)."""
        if not self.continuous or self.global_tick == 0:
            raise RuntimeError("throughput needs a continuous-reset run with at least one tick")
        return 1000.0 * self.completed["success"].sum() / (self.global_tick * len(self.slot_seeds))


def _scatter(old: np.ndarray, slots: np.ndarray, new: np.ndarray) -> np.ndarray:
    out = old.copy()
    out[slots] = new
    return out


def continuous_seed(slot_seed: int, k: int) -> int:
    """Seed of the k-th episode of a continuous-reset slot (k = 0 is the slot seed itself)."""
    if k == 0:
        return int(slot_seed)
    return int(np.random.SeedSequence([int(slot_seed), int(k)]).generate_state(1, np.uint32)[0])
