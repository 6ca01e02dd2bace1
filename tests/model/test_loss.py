"""The xr0-async training objective (docs/architecture.md §7)."""

import dataclasses

import pytest
import torch

import xr0lab
from xr0lab.config import TrainConfig


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
