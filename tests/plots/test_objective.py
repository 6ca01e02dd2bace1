"""The training-objective panels draw what they are given: shares, density, weights."""

import numpy as np
import torch

from xr0lab.config import preset
from xr0lab.plots import objective


def test_prefix_schedule_bars_are_the_shares_of_the_draws():
    fig = objective.plot_prefix_schedule(np.array([0, 0, 0, 2, 3, 3, 3, 3]),
                                         {0: 0.5, 1: 0.25, 2: 0.25, 3: 0.0})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.375, 0.0, 0.125, 0.5]


def test_time_histogram_and_density():
    fig = objective.plot_time_sampling(torch.rand(500), alpha=1.0, beta=1.0)
    density = fig.axes[0].get_lines()[0].get_ydata()
    assert np.allclose(density, 1.0)   # uniform: Beta(1, 1), scale 1


def test_reweighting_mean_line_and_chunk_indices():
    w = torch.ones(3, 4, 32)
    w[0, :, :2] = 3.0                 # sample 0 weighted up on the active dims
    w[..., 2:] = 100.0                # padded dims are not drawn
    fig = objective.plot_reweighting(w, prefix_length=2, clamp=(0.5, 5.0))
    mean = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("mean")][0]
    assert mean.get_xdata().tolist() == [2, 3, 4, 5]
    assert np.allclose(mean.get_ydata(), 5 / 3)


def test_three_panels_with_weights_two_without():
    cfg = preset("tiny", mode="xr0-async")
    fig = objective.plot_training_objective(times=torch.rand(100), config=cfg,
                                            prefix_draws=np.zeros(10, int))
    assert len(fig.axes) == 2
    fig = objective.plot_training_objective(times=torch.rand(100), config=cfg,
                                            prefix_draws=np.zeros(10, int),
                                            weights=torch.ones(2, 27, 32), prefix_length=3)
    assert len(fig.axes) == 3
