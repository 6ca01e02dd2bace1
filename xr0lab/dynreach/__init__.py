"""DynReach: a CPU benchmark for action prefixing and the Λ mask (docs/dynreach.md).

Read `world.py` first (the environment an arm acts in and its conventions), then `arms.py`
(what the benchmark compares) and `sweep.py` (how a run is organised, and the command behind it).

The world (numpy only; importing this package imports nothing heavier):
    seeds         per-episode generators from (seed, scenario, stream); the scenario names
    physics       command limit, cup spill, the S3 wall and its detour points
    scenarios     `Episodes` (an episode's whole script) and the S1-S4, S1E and S1M (v2's
                  primary: jump while moving, then a second jump) samplers
    instructions  the fixed vocabulary and each scenario's instruction
    render        RGB frames of episodes at their ticks
    world         `WorldConfig` and the batched `DynReach` environment
    expert        the scripted pursuit expert (labels, latency floor, kappa)
    data          seed splits, expert datasets ("executed" or "replan" labels), conflict cases
    metrics       reaction time, ERT (v1: analytic floor; v2: fresh, sustained, over the oracle),
                  spill, throughput, conflict and copy scores
    stats         hierarchical bootstrap, paired differences, seed-level tests, Holm
    oracle        arm O, the privileged expert as a chunking policy (v2's floor), and a scripted
                  copy-the-prefix test policy

The arms and their policies (import them directly; they import torch):
    arms          the arms of v1 and v2 as data, and v1's comparisons (torch-free)
    policies      the tier-0 conv encoder + `FlowActionExpert` policy, normalisation
    guidance      inference-time guidance toward the committed remainder (arm A2)
    probe         a linear probe of the goal in the context tokens
    tier1         the real tiny XR-0 preset as a DynReach policy (integration path)
    train         stage A / stage B training, resumable; `set_threads`
    evaluate      every condition through the runtime's virtual clock, conflict test, C(k),
                  attention mass, cost (v1: H = 16, s = 8)
    evaluate_v2   v2's conditions on XR-0's timeline (H = 30, s = 20, p = d) beside the oracle,
                  the band table, copy scores on executed indices

Running, merging and reading a sweep:
    sweep         v1's presets and cells, `run_command` (`python -m xr0lab dynreach`)
    study         v2 as a study: presets (v2ci, v2quick, pilot, confirm), the stage-A gate,
                  seed-level analysis, the pilot's verdict
    executors     where units of work run: local worker processes or Ray
    store         the run directory's one file format: JSON + safetensors, never a pickle
    cells         one cell per (arm, seed) on disk, in `store`'s format
    merge         v1's cells -> one results dict: estimates, primary and secondary families
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
