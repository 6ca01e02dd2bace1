"""The objective's draws: the Beta time sampler against its density, the prefix schedule's
probabilities, and one training step of the example model reproduced with its own draws."""

import dataclasses

import numpy as np
import pytest
import torch

from xr0lab.config import preset
from xr0lab.inspect import objective


def test_time_density_is_a_density_and_matches_the_sampler():
    cfg = preset("tiny", mode="xr0-async")
    f = cfg.flow
    grid = np.linspace(0, 1, 200_001)
    dens = objective.time_density(grid, alpha=f.beta_alpha, beta=f.beta_beta, scale=f.time_scale)
    integral = float((dens[1:] + dens[:-1]).sum() / 2 * (grid[1] - grid[0]))   # trapezoids
    assert integral == pytest.approx(1.0, abs=1e-3)
    assert (dens[grid > f.time_scale] == 0).all()
    # Beta(1.5, 1): density of u is 1.5 sqrt(u); t = 0.999 (1 - u) -> at t = 0, u = 1
    assert dens[0] == pytest.approx(1.5 / 0.999)
    draws = objective.time_draws(cfg, 20_000, seed=0)
    assert torch.equal(draws, objective.time_draws(cfg, 20_000, seed=0))
    assert float(draws.mean()) == pytest.approx(0.999 * 1.0 / 2.5, abs=0.01)
    hist, edges = np.histogram(draws.numpy(), bins=10, range=(0, 1), density=True)
    centres = (edges[1:] + edges[:-1]) / 2
    expected = objective.time_density(centres, alpha=1.5, beta=1.0, scale=0.999)
    assert np.abs(hist[:-1] - expected[:-1]).max() < 0.1   # last bin straddles t = 0.999


def test_prefix_probabilities_per_schedule():
    cfg = preset("tiny", mode="xr0-async")
    probs = objective.prefix_probabilities(cfg)
    assert probs[0] == 0.5 and sum(probs.values()) == pytest.approx(1.0) and max(probs) == 6
    assert objective.prefix_probabilities(cfg, chunk_length=2) == {0: 0.5, 1: 0.25, 2: 0.25}
    paper = cfg.replace(train=dataclasses.replace(cfg.train, prefix_schedule="paper", max_prefix=3))
    assert objective.prefix_probabilities(paper) == {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}
    assert objective.prefix_probabilities(preset("tiny")) == {0: 1.0}
    draws = objective.prefix_draws(cfg, 3000, seed=1)
    assert abs((draws == 0).mean() - 0.5) < 0.04 and set(draws.tolist()) == set(range(7))
    assert (objective.prefix_draws(preset("tiny"), 20) == 0).all()


def test_read_settings_from_a_metrics_record():
    from xr0lab.example.train import ExampleSettings

    record = {"settings": {**ExampleSettings(batch_size=3).to_dict()}}
    settings = objective.read_settings(record)
    assert settings == ExampleSettings(batch_size=3)
    assert settings.scenarios == ("S1M", "S1")


def test_one_training_step_with_its_own_draws(tiny_async_model):
    from xr0lab.dynreach.train import step_generator
    from xr0lab.example.build import QUICK
    from xr0lab.example.train import training_data
    from xr0lab.model.loss import sample_prefix_length

    settings = dataclasses.replace(QUICK, batch_size=3)
    cfg = tiny_async_model.config
    step = objective.prefixed_step(cfg, settings, "stage3")
    draws = [sample_prefix_length(cfg, 30, step_generator(settings.seed, 3, s))
             for s in range(step + 1)]
    assert draws[-1] > 0 and all(d == 0 for d in draws[:-1])
    data = training_data(settings)
    out, idx = objective.training_step_loss(tiny_async_model, data, settings, 3, step)
    again, idx2 = objective.training_step_loss(tiny_async_model, data, settings, "stage3", step)
    assert out.prefix_length == draws[-1] and np.array_equal(idx, idx2)
    repeat = cfg.train.training_repeat   # each batch row is repeated for the DiT
    assert out.weights.shape == (3 * repeat, 30 - out.prefix_length, 32)
    assert torch.equal(out.weights, again.weights) and torch.equal(out.t, again.t)
    lo, hi = cfg.train.weight_clamp
    assert float(out.weights.min()) >= lo and float(out.weights.max()) <= hi
    with pytest.raises(ValueError, match="stage"):
        objective.training_step_loss(tiny_async_model, data, settings, "stage4", step)
    with pytest.raises(ValueError, match="draws a prefix"):
        objective.prefixed_step(preset("tiny"), settings, "stage3", limit=5)
