"""Tier 1: the real tiny XR-0 preset as a DynReach chunk policy (an integration path).

`Tier1Policy` wraps `XR0Model(preset("tiny"))` (a real tiny Qwen3-VL + DiT) so DynReach frames
go through the released prompt and processor; `tier1_smoke` trains it a few steps and runs it
through the runtime's virtual clock. Smoke-tested only: the sweep uses tier 0 (`policies`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xr0lab.dynreach.data import generate, split_seeds
from xr0lab.dynreach.instructions import INSTRUCTIONS, VOCAB
from xr0lab.dynreach.policies import denormalise_actions, normalise_actions
from xr0lab.dynreach.world import DynReach, WorldConfig


class Tier1Policy:
    """The real tiny preset (`XR0Model(preset("tiny"))`) as a DynReach chunk policy.

    DynReach frames (upsampled to a multiple of 32 px) go through the offline processor with the
    released one-view prompt; the 2-D state and action live in the first two of the model's 32
    dims (the action mask switches the others off). Integration path only: untrained weights
    unless the caller loads some; the sweep uses tier 0.
    """

    def __init__(self, model=None, *, dit_layers: int | None = None,
                 vlm_layers: int | None = None, image_size: int = 64, mode: str = "xr0-async",
                 seed: int = 0) -> None:
        import xr0lab
        from xr0lab.io.examples import EXAMPLE_ROBOT, example_processor

        if model is None:
            torch.manual_seed(seed)
            model = xr0lab.XR0Model(xr0lab.preset("tiny", mode=mode, chunk_length=16,
                                                  dit_layers=dit_layers, vlm_layers=vlm_layers))
        self.model = model.eval()
        self.robot = EXAMPLE_ROBOT
        self.processor = example_processor(model.config.action.chunk_length,
                                           model.config.action.action_dim)
        self.image_size = image_size

    def inputs(self, obs: dict) -> dict:
        img = np.asarray(obs["image"])
        rep = max(1, self.image_size // img.shape[1])
        img = img.repeat(rep, axis=1).repeat(rep, axis=2)
        B = img.shape[0]
        A = self.model.config.action.action_dim
        state = np.zeros((B, 1, A), np.float32)
        state[:, 0, :2] = 2 * np.asarray(obs["state"], np.float32) - 1
        words = [" ".join(VOCAB[i] for i in row if i) for row in np.asarray(obs["tokens"])]
        out = self.processor(images=[[im] for im in img], instruction=words or
                             [INSTRUCTIONS["S1"]] * B, state=state, robot_type=self.robot,
                             prompt_style="release-1view")
        keep = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "state")
        inputs = {k: out[k] for k in keep}
        mask = torch.zeros(B, self.model.config.action.chunk_length, A)
        mask[..., :2] = 1
        inputs["action_mask"] = mask
        return inputs

    def __call__(self, obs: dict, noise: torch.Tensor, *, prefix: Any = None,
                 prefix_length: int = 0) -> np.ndarray:
        inputs = self.inputs(obs)
        B, H = noise.shape[:2]
        A = self.model.config.action.action_dim
        full = torch.zeros(B, H, A)
        full[..., :2] = noise
        pre = None
        if prefix_length:
            pre = torch.zeros(B, prefix_length, A)
            pre[..., :2] = normalise_actions(prefix)[:, :prefix_length]
        out = self.model.predict_actions(**inputs, noise=full, prefix=pre,
                                         prefix_length=prefix_length or None)
        return denormalise_actions(out[..., :2])

    def loss(self, batch: dict, generator: torch.Generator | None = None):
        """The xr0-async training objective on a DynReach batch (`ExpertDataset.batch`)."""
        inputs = self.inputs(batch)
        B, H = np.asarray(batch["actions"]).shape[:2]
        A = self.model.config.action.action_dim
        actions = torch.zeros(B, H, A)
        actions[..., :2] = normalise_actions(batch["actions"])
        return self.model.compute_loss(**inputs, actions=actions, generator=generator)


def tier1_smoke(*, steps: int = 2, batch_size: int = 2, episodes: int = 2, ticks: int = 24,
                delay: int = 3, seed: int = 0, dit_layers: int | None = 2,
                vlm_layers: int | None = 2) -> dict:
    """Tier 1 end to end, minimally: a few xr0-async training steps of the real tiny preset on
    S1 expert data, then S1 episodes through the runtime's virtual clock (prefix mode, p = d).

    Returns the losses, the timeline's tick counts and the executed actions. This is an
    integration check of the full-model path, not a benchmark result.
    """
    from xr0lab.runtime import ChunkExecutor, ExecutorConfig

    policy = Tier1Policy(dit_layers=dit_layers, vlm_layers=vlm_layers, seed=seed)
    data = generate("S1", split_seeds("train", 2))
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    losses = []
    policy.model.train()
    for step in range(steps):
        idx = np.random.default_rng((seed, step)).integers(0, len(data), batch_size)
        out = policy.loss(data.batch(idx, 32), generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    policy.model.eval()
    env = DynReach(WorldConfig("S1", image_size=32))
    env.reset(np.arange(episodes))
    calls = []

    def run_policy(obs, prefix, prefix_length):
        noise = torch.as_tensor(np.random.default_rng((seed, len(calls))).standard_normal(
            (episodes, 16, 2)), dtype=torch.float32)
        calls.append(prefix_length)
        with torch.no_grad():
            return policy(obs, noise, prefix=prefix, prefix_length=prefix_length)

    ex = ChunkExecutor(run_policy, ExecutorConfig(16, 8, delay=delay, prefix_length=delay))
    for _ in range(ticks):
        env.step(ex.step(env.observe))
    tl = ex.timeline()
    return {"losses": losses, "counts": tl.counts(), "prefix_lengths": calls,
            "actions": env.actions[:, :ticks]}
