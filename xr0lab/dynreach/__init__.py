"""DynReach: a CPU benchmark for action prefixing and the Λ mask (benchmark spec).

Modules: `world` (batched numpy environment and renderer), `expert` (scripted pursuit expert),
`data` (seed splits, expert datasets, conflict cases), `metrics` (benchmark metrics), `stats`
(hierarchical bootstrap, paired differences, Holm). Importing this package only imports numpy.

Phase 2 (import them directly; they import torch): `models` (the arms as data, the tier-0 conv
encoder + FlowActionExpert policy, the tier-1 adapter), `train` (stage A / stage B, resumable),
`evaluate` (every condition through the runtime's virtual clock, conflict test, C(k), attention
mass, cost), `sweep` (presets, cells in worker processes, merge and statistics), `report`
(notebook figures and findings), `cli` (`python -m xr0lab dynreach ...`).
"""

from xr0lab.dynreach.data import (TEST_SEEDS, ConflictCases, ExpertDataset, conflict_cases,
                               generate, prefix_predictability, split_seeds)
from xr0lab.dynreach.expert import ExpertConfig, ExpertRollout, rollout_expert
from xr0lab.dynreach.world import (DEFAULT_KAPPA, SCENARIOS, DynReach, Episodes, WorldConfig,
                                render, sample_episodes)

__all__ = ["DEFAULT_KAPPA", "SCENARIOS", "TEST_SEEDS", "ConflictCases", "DynReach", "Episodes",
           "ExpertConfig", "ExpertDataset", "ExpertRollout", "WorldConfig", "conflict_cases",
           "generate", "prefix_predictability", "render", "rollout_expert", "sample_episodes",
           "split_seeds"]
