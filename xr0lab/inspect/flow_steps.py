"""How the sampler's step count and integrator shape the chunk: the convergence of the one-step
clean estimate over flow steps, and the error of (method, steps) against a fine reference.

Axes: N flow steps, B batch, T chunk length, A action dims.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from xr0lab.flow import FlowTrace
from xr0lab.inspect.catalogue import EVALUATIONS_PER_STEP
from xr0lab.inspect.interventions import chunk_distance
from xr0lab.model.vlm import VLMContext


def clean_estimate_convergence(trace: FlowTrace, final: torch.Tensor) -> torch.Tensor:
    """(N, B) L2 distance of each step's one-step clean estimate to the final chunk."""
    return torch.stack([chunk_distance(est, final) for est in trace.clean_estimate])


def step_sweep(model: Any, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor,
               *, noise: torch.Tensor, steps: Iterable[int] = range(1, 21),
               methods: Sequence[str] = ("euler", "midpoint", "heun"),
               reference_steps: int = 100, reference_method: str = "heun",
               labels: torch.Tensor | None = None,
               **sample_kwargs: Any) -> list[dict[str, Any]]:
    """Distance of the chunk to a `reference_steps`-step reference for each (method, steps), all
    from the same noise. Records: {"method", "steps", "evaluations" (network calls), "l2"}, and
    "l2_label", the distance to `labels` (B, T, A) (e.g. the expert's chunk), when given; both
    over the dims `action_mask` keeps, averaged over the batch."""
    with torch.no_grad():
        ref = model.sample(context, state, action_mask, noise=noise, num_steps=reference_steps,
                           method=reference_method, **sample_kwargs)
        out = []
        for method in methods:
            for n in steps:
                acts = model.sample(context, state, action_mask, noise=noise, num_steps=n,
                                    method=method, **sample_kwargs)
                rec = {"method": method, "steps": n,
                       "evaluations": n * EVALUATIONS_PER_STEP[method],
                       "l2": float(chunk_distance(acts, ref, action_mask).mean())}
                if labels is not None:
                    rec["l2_label"] = float(chunk_distance(acts, labels.to(acts.device),
                                                           action_mask).mean())
                out.append(rec)
    return out
