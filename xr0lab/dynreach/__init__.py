"""DynReach: a CPU benchmark for action prefixing and the Λ mask (docs/dynreach.md).

Read `world.py` first (the environment an arm acts in and its conventions), then `arms.py`
(what the benchmark compares) and `sweep.py` (how a run is organised, and the command behind it).

The world (numpy only; importing this package imports nothing heavier):
    seeds         per-episode generators from (seed, scenario, stream); the scenario names
    physics       command limit, cup spill, the S3 wall and its detour points
    scenarios     `Episodes` (an episode's whole script) and the S1-S4, S1E samplers
    instructions  the fixed vocabulary and each scenario's instruction
    render        RGB frames of episodes at their ticks
    world         `WorldConfig` and the batched `DynReach` environment
    expert        the scripted pursuit expert (labels, latency floor, kappa)
    data          seed splits, expert datasets, conflict cases
    metrics       reaction time, ERT, spill, throughput, conflict and copy scores
    stats         hierarchical bootstrap, paired differences, Holm

The arms and their policies (import them directly; they import torch):
    arms          the arms as data, and the comparisons the statistics make (torch-free)
    policies      the tier-0 conv encoder + `FlowActionExpert` policy, normalisation
    guidance      inference-time guidance toward the committed remainder (arm A2)
    probe         a linear probe of the goal in the context tokens
    tier1         the real tiny XR-0 preset as a DynReach policy (integration path)
    train         stage A / stage B training, resumable; `set_threads`
    evaluate      every condition through the runtime's virtual clock, conflict test, C(k),
                  attention mass, cost

Running, merging and reading a sweep:
    sweep         presets, cells in worker processes, `run_command` (`python -m xr0lab dynreach`)
    cells         one pickled cell per (arm, seed) on disk
    merge         cells -> one results dict: estimates, primary and secondary families
    results       `load_results` and the accessors figures and findings share
    figures       the notebooks' figures (return closed figures; callers save)
    findings      the notebooks' findings text, every number read from results
"""

from xr0lab.dynreach.data import (TEST_SEEDS, ConflictCases, ExpertDataset, conflict_cases,
                                  generate, prefix_predictability, split_seeds)
from xr0lab.dynreach.expert import ExpertConfig, ExpertRollout, rollout_expert
from xr0lab.dynreach.physics import DEFAULT_KAPPA
from xr0lab.dynreach.render import render
from xr0lab.dynreach.scenarios import Episodes, sample_episodes
from xr0lab.dynreach.seeds import SCENARIOS
from xr0lab.dynreach.world import DynReach, WorldConfig

__all__ = ["DEFAULT_KAPPA", "SCENARIOS", "TEST_SEEDS", "ConflictCases", "DynReach", "Episodes",
           "ExpertConfig", "ExpertDataset", "ExpertRollout", "WorldConfig", "conflict_cases",
           "generate", "prefix_predictability", "render", "rollout_expert", "sample_episodes",
           "split_seeds"]
