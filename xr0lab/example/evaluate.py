"""What the example model can do, measured the way DynReach measures policies.

Success runs whole episodes through the runtime's virtual clock (`ChunkExecutor`, s = 20) with
the benchmark's per-(episode, cycle) flow noise: the release checkpoint switches to each new chunk
at d (no prefix, DynReach's naive arm A1), the xr0-async checkpoint commits p = d actions as its
prefix (arm A5's timing). The goal probe is a ridge regression of the visible goal from the
image tokens' context (the paired VLM layers' keys and values at the image positions: what the
DiT attends to), held out, as tier 0's probe reads its encoder tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from xr0lab.dynreach.data import split_seeds
from xr0lab.example.policy import TinyPolicy

EXECUTION_HORIZON = 20
TEST_OFFSET = 300_000     # the example model's own test episodes: test split 2,300,000 ...
ARM_OF_MODE = {"release": "A1", "xr0-async": "A5"}


def test_seeds(n: int) -> np.ndarray:
    return split_seeds("test", n, offset=TEST_OFFSET)


@torch.no_grad()
def success(model, scenario: str, delay: int, seeds: np.ndarray, *,
            image_size: int = 64) -> dict:
    """Plain success (and cup success) of `model` on `scenario` at delay `delay` over `seeds`;
    the model's config mode picks the timing (module docstring)."""
    from xr0lab.dynreach.arms import get_arm
    from xr0lab.dynreach.evaluate import ArmPolicy
    from xr0lab.dynreach.evaluate_v2 import _roll, _worlds, executor_config_v2

    mode = model.config.mode.mode
    arm = get_arm(ARM_OF_MODE[mode], "v2")
    policy = TinyPolicy(model)
    plain, cups = _worlds(scenario, image_size, (1.0,), np.asarray(seeds))
    config = executor_config_v2(arm, delay, model.config.action.chunk_length,
                                EXECUTION_HORIZON)
    was = model.training
    model.eval()
    _roll(ArmPolicy(policy, arm, np.asarray(seeds)), plain, cups, config, plain.observe)
    model.train(was)
    return {"success_plain": float(plain.success.mean()),
            "success_cup": float(cups[0].success.mean()),
            "episodes": int(len(seeds)), "prefix_length": int(config.prefix_length),
            # per test episode, in seed order: lets anyone recompute a subset exactly
            "plain_per_episode": "".join("1" if s else "0" for s in plain.success),
            "cup_per_episode": "".join("1" if s else "0" for s in cups[0].success)}


@torch.no_grad()
def image_context(model, data, index: np.ndarray, image_size: int = 64) -> np.ndarray:
    """(M, F) the paired layers' K and V at the image-token positions, flattened."""
    from xr0lab.dynreach.instructions import INSTRUCTIONS
    from xr0lab.example.inputs import robot_inputs

    feats = []
    for i in range(0, len(index), 128):
        b = data.batch(index[i:i + 128], image_size)
        inputs = robot_inputs(b["image"], b["state"], [INSTRUCTIONS["S1"]] * len(b["state"]),
                              model.config.action.action_dim, model.config.action.chunk_length)
        ctx = model.prefill(inputs["input_ids"], inputs["attention_mask"],
                            inputs["pixel_values"], inputs["image_grid_thw"])
        m = ctx.image_token_mask  # (B, L)
        parts = [t.transpose(1, 2)[m].reshape(int(m.shape[0]), -1)
                 for t in (*ctx.keys, *ctx.values)]  # each (B, n_img * kv * head_dim)
        feats.append(torch.cat(parts, 1).float().numpy())
    return np.concatenate(feats)


def goal_probe(model, data, n: int = 2048, seed: int = 0, image_size: int = 64) -> dict:
    """Held-out R^2 of a ridge probe of the visible goal from the image-token context."""
    from xr0lab.dynreach.probe import linear_probe

    rng = np.random.default_rng((seed, 0xB0B))
    idx = rng.choice(len(data), size=min(n, len(data)), replace=False)
    return linear_probe(image_context(model, data, idx, image_size), data.goal[idx], seed=seed)
