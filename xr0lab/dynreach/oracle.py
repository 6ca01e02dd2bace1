"""Arm O, the oracle (docs/dynreach.md §5-6, v2), and a scripted copy-the-prefix policy.

Axis legend: N episodes, H chunk length, p prefix length, 2 = (x, y).

The oracle is the privileged expert run as a chunking policy through the same executor, timing
and episodes as the arm it references: at each trigger it reads the true state of the capture
tick (position, last executed command, the goal and wall as they stand then), first replays the
committed prefix it is handed (those actions will execute whatever it plans), then plans the
rest of the chunk with the expert from where the prefix leaves the agent. It knows nothing the
capture tick does not show, so its reaction time is the floor F of every metric that subtracts
one: it reacts at the first fresh action with the quickest turn the rate-limited expert can make.

`CopyPrefixPolicy` is the opposite extreme for tests: it extends the last committed action for
the whole chunk (and plans like the oracle when it has no prefix), so it never reacts to a
jump while it keeps being handed prefixes; its ERT must come out > 0.

Both need the privileged state in the observation: wrap the world's `observe` with
`privileged_observe(env)`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from xr0lab.dynreach.expert import ExpertConfig, expert_continuation
from xr0lab.dynreach.physics import Wall, advance
from xr0lab.dynreach.world import DynReach


def privileged_observe(env: DynReach, observe: Callable[[], dict] | None = None
                       ) -> Callable[[], dict]:
    """`observe` (default env.observe) plus the capture tick's true goal, last executed command
    and wall, under the keys the oracle reads ("oracle_goal", "oracle_prev", "oracle_wall")."""
    base = env.observe if observe is None else observe

    def obs() -> dict:
        out = dict(base())
        ep = env.episodes
        out["oracle_goal"] = ep.goal_at(env.tick).copy()
        out["oracle_prev"] = env.prev_action.copy()
        out["oracle_wall"] = ep.wall(env.tick)
        out["oracle_pos"] = env.pos.copy()
        return out

    return obs


def _replay(pos: np.ndarray, prefix: np.ndarray | None, wall: Wall | None):
    """Position and last command after executing the committed prefix from `pos`."""
    if prefix is None or prefix.shape[-2] == 0:
        return pos, None
    for k in range(prefix.shape[-2]):
        pos = advance(pos, prefix[:, k], wall)
    return pos, prefix[:, -1]


class OraclePolicy:
    """The privileged expert as an executor policy (arm O). `chunk` = H."""

    def __init__(self, chunk: int, expert: ExpertConfig = ExpertConfig(),
                 side: np.ndarray | None = None) -> None:
        self.chunk, self.expert, self.side = chunk, expert, side
        self.calls = 0

    def __call__(self, obs: dict, prefix: Any, prefix_length: int,
                 prefix_weights: Any = None) -> np.ndarray:
        self.calls += 1
        pos, prev, goal, wall = (np.asarray(obs["oracle_pos"], np.float64),
                                 np.asarray(obs["oracle_prev"], np.float64),
                                 obs["oracle_goal"], obs["oracle_wall"])
        pre = None if prefix is None else np.asarray(prefix, np.float64)[:, :prefix_length]
        after, last = _replay(pos, pre, wall)
        p = 0 if pre is None else pre.shape[1]
        plan, _ = expert_continuation(after, prev if last is None else last, goal,
                                      self.chunk - p, self.expert, wall, self.side)
        return plan if p == 0 else np.concatenate([pre, plan], axis=1)


class CopyPrefixPolicy(OraclePolicy):
    """Extends the last committed action over the whole chunk; plans like the oracle only when
    it is handed no prefix (the first chunk). A test policy that never looks at a jump."""

    def __call__(self, obs: dict, prefix: Any, prefix_length: int,
                 prefix_weights: Any = None) -> np.ndarray:
        if prefix is None or prefix_length == 0:
            return super().__call__(obs, prefix, prefix_length, prefix_weights)
        self.calls += 1
        pre = np.asarray(prefix, np.float64)[:, :prefix_length]
        rest = np.repeat(pre[:, -1:], self.chunk - prefix_length, axis=1)
        return np.concatenate([pre, rest], axis=1)


__all__ = ["CopyPrefixPolicy", "OraclePolicy", "privileged_observe"]
