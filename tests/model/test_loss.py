"""The xr0-async training objective (docs/architecture.md §7)."""

import dataclasses

import numpy as np
import pytest
import torch

import xr0lab
from xr0lab.config import TrainConfig
from xr0lab.model.loss import flow_loss


def _model_with(tiny_model, mode="xr0-async", **train):
    cfg = tiny_model.config.with_mode(mode)
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, **train))
    model = xr0lab.XR0Model(cfg, vlm=tiny_model.vlm)
    model.load_state_dict(tiny_model.state_dict())
    return model


@pytest.fixture(scope="module")
def batch(example_inputs):
    actions = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(0))
    return dict(example_inputs, actions=actions * example_inputs["action_mask"])


def test_weights_clamped_and_normalised(tiny_model, batch):
    m = _model_with(tiny_model)
    actions = batch["actions"].clone()
    actions[0, 10, 0] = 100.0  # one entry the generation cannot match: its weight must clamp at 5
    out = m.compute_loss(**dict(batch, actions=actions), prefix_length=4,
                         generator=torch.Generator().manual_seed(0))
    w = out.weights
    assert out.prefix_length == 4 and w.shape == (8, 26, 32)  # batch 2 x training_repeat 4
    assert w.min() >= 0.5 and w.max() <= 5.0
    assert (w[:4, 6, 0] == 5.0).all()  # the outlier (index 10 - p) in every repeat of sample 0
    assert (w == 0.5).any()


def test_no_prefix_means_unit_weights_and_plain_mse(tiny_model, batch):
    m = _model_with(tiny_model, freq_coef=0.0, training_repeat=1)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.2, 0.7])
    noise = torch.randn(2, 30, 32, generator=g)
    out = m.compute_loss(**batch, prefix_length=0, t=t, noise=noise)
    assert out.weights is None and out.freq == 0
    with torch.no_grad():
        x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * batch["actions"]
        ctx = m.prefill(*(batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")))
        v = m.denoise_step(m.prepare(ctx, batch["state"], 30), ctx, x_t, t, batch["action_mask"])
        u = batch["actions"] - noise
        mask = batch["action_mask"]
        expected = ((v - u) ** 2 * mask).sum() / mask.sum()
    assert torch.allclose(out.mse, expected, rtol=1e-5)
    assert torch.allclose(out.loss, 0.5 * expected, rtol=1e-5)


def test_frequency_term_and_padding_option(tiny_model, batch):
    kw = dict(prefix_length=0, generator=torch.Generator().manual_seed(0))
    unmasked = _model_with(tiny_model).compute_loss(**batch, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    masked = _model_with(tiny_model, mask_freq_padding=True).compute_loss(**batch, **kw)
    assert torch.equal(unmasked.mse, masked.mse)
    assert masked.freq < unmasked.freq  # 25 of 32 dims are padding and no longer count
    assert torch.allclose(unmasked.loss, 0.5 * unmasked.mse + unmasked.freq)


class _Context:
    """Stands in for a VLMContext: the stub expert below never reads it."""

    def repeat_interleave(self, repeats):
        return self


class _DecayExpert:
    """v(x, t) = -x: a 2-step Euler generation ends at x0 / 4 off the prefix, in closed form."""

    def __init__(self, config):
        self.config = config

    def prepare(self, context, state, chunk_length, *, prefix_length, hidden_prefix, numerics):
        assert numerics == "precise"  # training rotates with the precise tables, as the prefill
        return None

    def denoise_step(self, setup, context, x, t, action_mask):
        return -x


# B = 2, T = 4, A = 3 (dims 0, 1 valid, dim 2 padded), p = 1. Rows p.. of the noise are 4 x the
# generation, chosen so that the L1 errors are small integers with a valid-entry mean of 2.5.
_GENERATED = [[[1, 2, 8], [14, 1, 0.25], [0, 4, 2]],
              [[0.5, 0.5, 1], [1, 1, 3], [2, 4, 0.75]]]
_ACTIONS = [[[0.5, -0.5, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]],
            [[-1, 2, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]]


@pytest.mark.parametrize("freq_weight,sample_w", [
    # All 9 entries: valid ones normalised by 2.5 and clamped, padded ones raw and clamped:
    # (0.5 + 0.8 + 5 + 5 + 0.5 + 0.5 + 0.5 + 1.2 + 2) / 9 and (0.5 + 0.5 + 1 + 0.5 + 0.5 + 3
    # + 0.8 + 1.6 + 0.75) / 9.
    ("released", [16.0 / 9, 9.15 / 9]),
    # The 6 valid entries only: (0.5 + 0.8 + 5 + 0.5 + 0.5 + 1.2) / 6, (4 x 0.5 + 0.8 + 1.6) / 6.
    ("valid_mean", [8.5 / 6, 4.4 / 6]),
])
def test_frequency_weight_hand_computed(freq_weight, sample_w):
    cfg = xr0lab.preset("tiny", mode="xr0-async", num_steps=2)
    cfg = cfg.replace(train=TrainConfig(training_repeat=1, freq_weight=freq_weight))
    p, t = 1, np.array([0.5, 0.25])
    actions = np.array(_ACTIONS, dtype=np.float64)
    noise = np.concatenate([np.ones((2, 1, 3)), 4 * np.array(_GENERATED)], axis=1)
    valid = np.broadcast_to(np.array([1.0, 1.0, 0.0]), (2, 4, 3))
    out = flow_loss(_DecayExpert(cfg), _Context(), torch.tensor(actions), torch.tensor(valid),
                    torch.zeros(2, 1, 32, dtype=torch.float64), prefix_length=p,
                    t=torch.tensor(t), noise=torch.tensor(noise))

    weights = np.array([[[0.5, 0.8, 5], [5, 0.5, 0.5], [0.5, 1.2, 2]],
                        [[0.5, 0.5, 1], [0.5, 0.5, 3], [0.8, 1.6, 0.75]]])
    np.testing.assert_allclose(out.weights.numpy(), weights, rtol=1e-12)
    x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
    v, u = -x_t[:, p:], (actions - noise)[:, p:]  # the prefix rows are not scored
    mse = ((v - u) ** 2 * weights * valid[:, p:]).sum() / valid[:, p:].sum()
    per_sample = np.abs(np.fft.rfft(v, axis=1) - np.fft.rfft(u, axis=1)).mean(axis=(1, 2))
    freq = (per_sample * np.array(sample_w)).mean()
    assert out.mse.item() == pytest.approx(mse, rel=1e-12)
    assert out.freq.item() == pytest.approx(freq, rel=1e-6)  # the FFT runs in float32
    assert out.loss.item() == pytest.approx(0.5 * mse + freq, rel=1e-6)


def test_frequency_weight_changes_only_the_frequency_term(tiny_model, batch):
    """On the tiny model (7 of 32 dims valid, p = 4) the two rules share the MSE and the weights."""
    outs = {}
    for rule in ("released", "valid_mean"):
        m = _model_with(tiny_model, freq_weight=rule)
        outs[rule] = m.compute_loss(**batch, prefix_length=4,
                                    generator=torch.Generator().manual_seed(0))
    released, valid_mean = outs["released"], outs["valid_mean"]
    assert torch.equal(released.mse, valid_mean.mse)
    assert torch.equal(released.weights, valid_mean.weights)
    assert not torch.isclose(released.freq, valid_mean.freq, rtol=1e-3)


def test_prefix_length_schedules(tiny_model):
    g = torch.Generator().manual_seed(0)
    released = _model_with(tiny_model)
    draws = torch.tensor([released.sample_prefix_length(30, g) for _ in range(4000)])
    assert 0.45 < (draws == 0).float().mean() < 0.55
    assert set(draws.tolist()) == set(range(7))
    assert draws[draws > 0].float().mean().item() == pytest.approx(3.5, abs=0.15)
    paper = _model_with(tiny_model, prefix_schedule="paper")
    draws = torch.tensor([paper.sample_prefix_length(30, g) for _ in range(4000)])
    assert set(draws.tolist()) == set(range(7))
    assert (draws == 0).float().mean().item() == pytest.approx(1 / 7, abs=0.03)
    assert max(released.sample_prefix_length(3, g) for _ in range(200)) == 3  # min(6, T)
    release_model = _model_with(tiny_model, mode="release")
    assert {release_model.sample_prefix_length(30, g) for _ in range(50)} == {0}


def test_prefix_hiding_only_in_async_and_only_long_prefixes(tiny_model, batch):
    g = torch.Generator().manual_seed(0)
    m = _model_with(tiny_model, reweight=False)
    assert m.compute_loss(**batch, prefix_length=2, generator=g).hidden_prefix is None
    out = m.compute_loss(**batch, prefix_length=6, generator=g)
    assert out.hidden_prefix.shape == (6,) and not out.hidden_prefix[-2:].any()
    with pytest.raises(ValueError, match="xr0-async"):
        _model_with(tiny_model, mode="release").compute_loss(**batch, prefix_length=3)


def test_training_repeat_and_gradients(tiny_model, batch):
    m = _model_with(tiny_model)
    calls = []
    handle = m.vlm.model.language_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = m.compute_loss(**batch, generator=torch.Generator().manual_seed(3))
    finally:
        handle.remove()
    assert len(calls) == 1 and out.t.shape == (8,)
    out.loss.backward()
    assert m.dit.layers[0].adaln_table.grad.abs().sum() > 0
    assert m.vlm.model.language_model.layers[-1].self_attn.k_proj.weight.grad.abs().sum() > 0
    m.zero_grad(set_to_none=True)


def test_loss_input_errors(tiny_model, batch):
    with pytest.raises(xr0lab.XR0InputError, match="actions must have shape"):
        tiny_model.compute_loss(**dict(batch, actions=batch["actions"][:, :5]))
    bad = batch["actions"].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(xr0lab.XR0InputError, match="NaN"):
        tiny_model.compute_loss(**dict(batch, actions=bad))


def test_train_config_validation():
    with pytest.raises(xr0lab.ConfigError, match="weight_clamp"):
        TrainConfig(weight_clamp=(5.0, 0.5))
    with pytest.raises(xr0lab.ConfigError, match="training_repeat"):
        TrainConfig(training_repeat=0)
    with pytest.raises(xr0lab.ConfigError, match="freq_weight"):
        TrainConfig(freq_weight="all")
