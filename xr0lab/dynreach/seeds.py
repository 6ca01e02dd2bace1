"""Per-episode randomness: every DynReach episode's generators are a function of its seed.

Each episode draws from its own generator, named by (seed, scenario, stream), so episode i is
identical whatever batch it is simulated in, and the world and the expert never share draws.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

Scenario = Literal["S1", "S2", "S3", "S4", "S1E", "S1M"]
# S1E is S1 with an early jump, while the agent is still under way (an addition to the spec's
# S1-S4, for policies trained on S1: same scene, same instruction, only the timing differs).
# S1M (v2's primary scenario) jumps only while the expert moves at >= 0.8 v_max, then once more.
# The names live here because their order is part of every episode's seed (`_SCENARIO_ID`):
# add scenarios at the end, never reorder them.
SCENARIOS: tuple[str, ...] = get_args(Scenario)

_SALT = {"world": 0x5EED_0001, "expert": 0x5EED_0002}
_SCENARIO_ID = {s: i + 1 for i, s in enumerate(SCENARIOS)}


def episode_rng(seed: int, scenario: str,
                stream: Literal["world", "expert"]) -> np.random.Generator:
    """The generator owned by one episode: a function of (seed, scenario, stream) only."""
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence([int(seed), _SCENARIO_ID[scenario], _SALT[stream]])))




def continuous_seed(slot_seed: int, k: int) -> int:
    """Seed of the k-th episode of a continuous-reset slot (k = 0 is the slot seed itself)."""
    if k == 0:
        return int(slot_seed)
    return int(np.random.SeedSequence([int(slot_seed), int(k)]).generate_state(1, np.uint32)[0])
