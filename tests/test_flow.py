"""Integrators on closed-form velocity fields; the t convention; time sampling (docs/architecture.md §6)."""

import math

import pytest
import torch

from xr0lab.flow import clean_estimate, integrate, interpolate, sample_time, target_velocity


def test_t0_is_noise_t1_is_data():
    noise, actions = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    assert torch.equal(interpolate(noise, actions, torch.zeros(2)), noise)
    assert torch.equal(interpolate(noise, actions, torch.ones(2)), actions)
    # Moving along the target velocity from any point on the path reaches the data at t = 1.
    t = torch.tensor([0.3, 0.7])
    x_t = interpolate(noise, actions, t)
    assert torch.allclose(clean_estimate(x_t, target_velocity(noise, actions), t), actions, atol=1e-6)


def test_integrator_starts_from_noise_at_t0():
    seen = []
    noise = torch.randn(1, 4, 2)
    integrate(lambda x, t: seen.append((x.clone(), t.clone())) or torch.zeros_like(x), noise, 3)
    assert torch.equal(seen[0][0], noise)
    assert [float(t[0]) for _, t in seen] == pytest.approx([0, 1 / 3, 2 / 3])


def test_time_dtype_rounds_the_grid_and_x_keeps_the_noise_dtype():
    """The released loop keeps t in bf16: t_k = k / 5 becomes 0.2002, 0.4004, 0.6016, 0.8008."""
    seen = []
    noise = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(0)).bfloat16()
    out = integrate(lambda x, t: seen.append((x.dtype, t.clone())) or torch.ones_like(x), noise, 5,
                    time_dtype=torch.bfloat16)
    assert {dtype for dtype, _ in seen} == {torch.bfloat16} and out.dtype == torch.bfloat16
    assert all(t.dtype == torch.bfloat16 for _, t in seen)
    assert [t[0].item() for _, t in seen] == [0.0, 0.2001953125, 0.400390625, 0.6015625,
                                               0.80078125]
    # Each bf16 step x + 0.2 * 1 rounds on its own; the default float32 grid is exact.
    expected = noise
    for _ in range(5):
        expected = expected + 0.2 * torch.ones_like(noise)
    assert torch.equal(out, expected)
    seen.clear()
    integrate(lambda x, t: seen.append((x.dtype, t.clone())) or torch.ones_like(x), noise.float(), 5)
    assert [t[0].item() for _, t in seen] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8], abs=1e-7)


@pytest.mark.parametrize("steps", [1, 2, 5, 20])
def test_euler_exact_on_the_straight_path_field(steps):
    """v(x, t) = (a - x) / (1 - t) is the flow of a point mass at a: Euler lands on it exactly.
    (With the default float32 t the last step misses by ~1e-7 relative: 1 - 0.95 is not exact.)"""
    g = torch.Generator().manual_seed(steps)
    a = torch.randn(2, 6, 3, dtype=torch.float64, generator=g)
    noise = torch.randn(2, 6, 3, dtype=torch.float64, generator=g)
    out = integrate(lambda x, t: (a - x) / (1 - t.view(-1, 1, 1)), noise, steps,
                    time_dtype=torch.float64)
    assert torch.allclose(out, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method,factor", [
    ("euler", lambda h: 1 - h),
    ("midpoint", lambda h: 1 - h + h * h / 2),
    ("heun", lambda h: 1 - h + h * h / 2),
])
def test_linear_decay_closed_form(method, factor):
    """dx/dt = -x: each step multiplies x by the method's stability polynomial."""
    noise = torch.randn(3, 4, 2, dtype=torch.float64)
    for n in (1, 4, 10):
        out = integrate(lambda x, t: -x, noise, n, method=method)
        assert torch.allclose(out, noise * factor(1 / n) ** n, atol=1e-12)
    fine = integrate(lambda x, t: -x, noise, 2000, method="heun")
    assert torch.allclose(fine, noise * math.exp(-1), atol=1e-6)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun"])
def test_prefix_exact_and_zero_velocity(method):
    g = torch.Generator().manual_seed(0)
    noise, prefix = torch.randn(2, 8, 3, generator=g), torch.randn(2, 8, 3, generator=g)
    out, trace = integrate(lambda x, t: torch.ones_like(x), noise, 5, prefix=prefix,
                           prefix_length=3, method=method, record=True)
    assert torch.equal(out[:, :3], prefix[:, :3])
    assert torch.equal(trace.velocity[:, :, :3], torch.zeros_like(trace.velocity[:, :, :3]))
    # Five float32 additions of 0.2: absolute rounding, so no relative tolerance near 0.
    assert torch.allclose(out[:, 3:], noise[:, 3:] + 1, rtol=0, atol=1e-6)


def test_trace_shapes_and_consistency():
    noise = torch.randn(2, 5, 3)
    out, trace = integrate(lambda x, t: -x, noise, 4, record=True)
    assert trace.num_steps == 4 and trace.x_t.shape == (4, 2, 5, 3)
    assert torch.equal(trace.x_t[0], noise) and torch.equal(trace.x_next[-1], out)
    assert torch.equal(trace.x_t[1:], trace.x_next[:-1])
    assert torch.allclose(trace.clean_estimate[0], noise - noise)  # x + (1 - 0) * (-x)


def test_observer_can_replace_tensors():
    noise = torch.zeros(1, 2, 1)
    out = integrate(lambda x, t: torch.zeros_like(x), noise, 2,
                    observer=lambda name, x: x + 1 if name == "x_next" else x)
    assert torch.equal(out, torch.full_like(noise, 2.0))


def test_beta_time_sampling():
    g = torch.Generator().manual_seed(0)
    t = sample_time(50_000, "beta", generator=g)
    assert 0 <= t.min() and t.max() <= 0.999
    # u ~ Beta(1.5, 1) has mean 0.6, so t = 0.999 (1 - u) has mean 0.3996.
    assert t.mean().item() == pytest.approx(0.3996, abs=0.005)
    assert torch.equal(sample_time(7, generator=torch.Generator().manual_seed(3)),
                       sample_time(7, generator=torch.Generator().manual_seed(3)))
    for kind in ("uniform", "logit_normal"):
        t = sample_time(10_000, kind, generator=g)
        assert 0 <= t.min() and t.max() <= 1 and t.mean().item() == pytest.approx(0.5, abs=0.02)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        integrate(lambda x, t: x, torch.zeros(1, 2, 1), 0)
    with pytest.raises(ValueError, match="prefix"):
        integrate(lambda x, t: x, torch.zeros(1, 4, 1), 2, prefix=torch.zeros(1, 1, 1), prefix_length=2)
    with pytest.raises(ValueError, match="integrator"):
        integrate(lambda x, t: x, torch.zeros(1, 2, 1), 2, method="rk4")
    with pytest.raises(ValueError, match="time sampling"):
        sample_time(3, "cosine")
