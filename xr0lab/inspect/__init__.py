"""Inspection of the model: named hook points, activation caches, and analyses built on them.

Read `hooked.py` first: `run_with_cache` / `run_with_hooks` and the rules of hook-name filters.

    hook_points.py    `HookPoint`, the identity module every hook sits on; `name_hook_points`
    catalogue.py      `HOOK_CATALOGUE`: every hook name with its shape and when it fires
    cache.py          `ActivationCache`: {hook name: tensor}, with the flow-step axis
    hooked.py         `HookedMixin`: temporary hooks, caching runs, the opt-in VLM-side hooks
    attention.py      attention mass per key segment, read from cached patterns
    interventions.py  zero / mean / swap / remap of the VLM K/V in a context, and their effect
    flow_steps.py     the clean estimate over flow steps; step count and integrator sweeps
    objective.py      the training objective's draws: flow times, prefix lengths, L1 weights
    dynreach.py       the example model in its DynReach world: scenes, chunk paths, headings

The model code (`xr0lab.model`) imports only the first four; the plots of these analyses are in
`xr0lab.plots`.
"""
