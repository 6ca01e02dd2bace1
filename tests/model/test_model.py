"""The tiny model end to end, and the xr0 preset on the meta device (docs/architecture.md §1-7)."""

import pytest
import torch

import xr0lab
from reference_dit import reference_sample
from xr0lab import XR0InputError, XR0Model, preset


def test_predicts_in_both_modes(tiny_model, tiny_async_model, example_inputs):
    a = tiny_model.predict_actions(**example_inputs, seed=0)
    b = tiny_async_model.predict_actions(**example_inputs, seed=0)
    assert a.shape == b.shape == (2, 30, 32) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert not torch.allclose(a, b)  # different mask and positions
    c = tiny_model.predict_actions(**example_inputs, seed=0, mode="xr0-async")
    assert torch.equal(b, c)  # a per-call mode override is the same as a mode config


def test_bit_reproducible_and_caller_rng_untouched(tiny_model, example_inputs):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = tiny_model.predict_actions(**example_inputs, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = tiny_model.predict_actions(**example_inputs, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, tiny_model.predict_actions(**example_inputs, seed=8))
    # Release seeding: the noise is exactly randn after manual_seed(seed).
    torch.manual_seed(7)
    noise = torch.randn(2, 30, 32)
    assert torch.equal(a, tiny_model.predict_actions(**example_inputs, noise=noise))


def test_vlm_runs_once_per_call(tiny_model, example_inputs):
    calls = []
    handle = tiny_model.vlm.model.language_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        tiny_model.predict_actions(**example_inputs, seed=0, num_steps=7)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_cached_context_equals_recomputing_vlm_every_step(tiny_async_model, example_inputs):
    m, inp = tiny_async_model, example_inputs
    prompt = {k: inp[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    noise = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(0))
    cached = m.predict_actions(**inp, noise=noise)

    def velocity(x, t):
        context = m.prefill(**prompt)  # recomputed at every step
        setup = m.prepare(context, inp["state"], 30)
        return m.denoise_step(setup, context, x, t, inp["action_mask"])

    with torch.no_grad():
        recomputed = xr0lab.integrate(velocity, noise, 5)
    assert torch.equal(cached, recomputed)


def test_layer_pairing_uses_last_vlm_layers(tiny_model, example_inputs):
    prompt = {k: example_inputs[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    with torch.no_grad():
        ctx = tiny_model.prefill(**prompt)
        out = tiny_model.vlm.model(**prompt, mm_token_type_ids=(prompt["input_ids"] == 151655).int(),
                                   use_cache=True)
    assert ctx.vlm_layers == (4, 5, 6, 7)
    for i, j in enumerate(ctx.vlm_layers):
        assert torch.equal(ctx.keys[i], out.past_key_values.layers[j].keys)
        assert torch.equal(ctx.values[i], out.past_key_values.layers[j].values)
    assert ctx.keys[0].shape == (2, 2, 90, 32)
    assert preset("xr0").vlm_layer_for_dit_layer == tuple(range(20, 36))


@pytest.mark.parametrize("mode,p", [("release", 0), ("xr0-async", 0), ("xr0-async", 4)])
def test_matches_independent_reference(tiny_model, tiny_async_model, example_inputs, mode, p):
    m = tiny_model if mode == "release" else tiny_async_model
    inp = example_inputs
    prompt = {k: inp[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 30, 32, generator=g)
    prefix = torch.randn(2, 30, 32, generator=g) if p else None
    with torch.no_grad():
        ctx = m.prefill(**prompt)
        ours = m.predict_actions(**inp, noise=noise, prefix=prefix, prefix_length=p or None)
        sd = {k: v.detach() for k, v in m.state_dict().items()}
        # Text after the images: the largest position is the same in t/h/w (1-D continuation).
        top = ctx.positions.masked_fill(~ctx.prompt_mask[None], -1).amax(-1)
        assert torch.equal(top[0], top[1]) and torch.equal(top[0], top[2])
        ref = reference_sample(sd, m.config, ctx.keys, ctx.values, ctx.prompt_mask,
                               ctx.positions[0], noise, inp["state"], inp["action_mask"], 5,
                               prefix, p)
    assert torch.allclose(ours, ref, atol=2e-4, rtol=1e-4), (ours - ref).abs().max()


def test_prefix_kept_exactly(tiny_async_model, example_inputs):
    prefix = torch.randn(2, 6, 32)
    a = tiny_async_model.predict_actions(**example_inputs, seed=0, prefix=prefix)
    assert torch.equal(a[:, :6], prefix)
    b = tiny_async_model.predict_actions(**example_inputs, seed=0, prefix=prefix, prefix_length=3)
    assert torch.equal(b[:, :3], prefix[:, :3]) and not torch.equal(b[:, 3:6], prefix[:, 3:6])
    _, trace = tiny_async_model.predict_actions(**example_inputs, seed=0, prefix=prefix, return_trace=True)
    assert trace.num_steps == 5 and not trace.velocity[:, :, :6].any()


def test_horizon_from_action_mask(tiny_model, example_inputs):
    inp = dict(example_inputs, action_mask=example_inputs["action_mask"][:, :10])
    assert tiny_model.predict_actions(**inp, seed=0).shape == (2, 10, 32)


def test_inactive_dims_do_not_change_the_output(tiny_model, example_inputs):
    """The action projector sees actions * action_mask: noise on masked dims is invisible."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 30, 32, generator=g)
    other = noise.clone()
    other[..., 7:] = torch.randn(2, 30, 25, generator=g)
    a = tiny_model.predict_actions(**example_inputs, noise=noise, num_steps=1)
    b = tiny_model.predict_actions(**example_inputs, noise=other, num_steps=1)
    assert torch.allclose(a[..., :7], b[..., :7], atol=1e-6)


def _bad(inputs, **changes):
    return dict(inputs, **changes)


@pytest.mark.parametrize("name,make,match", [
    ("pixel rows", lambda i: _bad(i, pixel_values=i["pixel_values"][:-4]), "pixel_values has"),
    ("pixel width", lambda i: _bad(i, pixel_values=i["pixel_values"][:, :100]), "features per patch"),
    ("grid", lambda i: _bad(i, image_grid_thw=i["image_grid_thw"][:1]), "image_grid_thw describes"),
    ("grid shape", lambda i: _bad(i, image_grid_thw=i["image_grid_thw"][:, :2]), r"\(n_images, 3\)"),
    ("state width", lambda i: _bad(i, state=torch.zeros(2, 1, 7)), r"state must have shape"),
    ("state nan", lambda i: _bad(i, state=i["state"].clone().fill_(float("nan"))), "NaN"),
    ("state batch", lambda i: _bad(i, state=torch.zeros(3, 1, 32)), "batch size"),
    ("mask width", lambda i: _bad(i, action_mask=torch.ones(2, 30, 7)), "action dims"),
    ("mask horizon", lambda i: _bad(i, action_mask=torch.ones(2, 31, 32)), "horizon"),
    ("mask batch", lambda i: _bad(i, action_mask=torch.ones(1, 30, 32)), "batch size"),
    ("ids shape", lambda i: _bad(i, input_ids=i["input_ids"][0]), r"\(B, L\)"),
    ("attn shape", lambda i: _bad(i, attention_mask=i["attention_mask"][:, :5]), "must equal"),
])
def test_bad_inputs(tiny_model, example_inputs, name, make, match):
    with pytest.raises(XR0InputError, match=match):
        tiny_model.predict_actions(**make(example_inputs), seed=0)


def test_bad_prefix_and_steps(tiny_model, tiny_async_model, example_inputs):
    with pytest.raises(XR0InputError, match="release"):
        tiny_model.predict_actions(**example_inputs, prefix=torch.zeros(2, 3, 32))
    m = tiny_async_model
    with pytest.raises(XR0InputError, match="prefix_length=31"):
        m.predict_actions(**example_inputs, prefix=torch.zeros(2, 31, 32))
    with pytest.raises(XR0InputError, match="shorter than prefix_length=5"):
        m.predict_actions(**example_inputs, prefix=torch.zeros(2, 3, 32), prefix_length=5)
    with pytest.raises(XR0InputError, match="NaN"):
        m.predict_actions(**example_inputs, prefix=torch.full((2, 3, 32), float("inf")))
    with pytest.raises(XR0InputError, match="num_steps"):
        m.predict_actions(**example_inputs, num_steps=0)
    with pytest.raises(XR0InputError, match="noise must have shape"):
        m.predict_actions(**example_inputs, noise=torch.zeros(2, 29, 32))


def test_xr0_preset_on_meta_device_has_spec_counts():
    with torch.device("meta"):
        model = XR0Model(preset("xr0"))
    params = dict(model.named_parameters())
    assert all(p.is_meta for p in params.values())
    total = sum(p.numel() for p in params.values())
    outside = sum(p.numel() for n, p in params.items() if not n.startswith("vlm."))
    layer = sum(p.numel() for n, p in params.items() if n.startswith("dit.layers.0."))
    assert layer == 16_790_784
    assert sum(p.numel() for n, p in params.items() if n.startswith("dit.")) == 268_652_544
    assert outside - 268_652_544 == 9_805_824
    assert outside == 278_458_368
    assert total == 4_716_274_176
    assert model.vlm.lm_head.weight is model.vlm.model.language_model.embed_tokens.weight
    assert params["dit.layers.15.attn.qkv_proj.weight"].shape == (3072, 1024)
    assert params["action_output_layer.layers.2.weight"].shape == (32, 32)
    assert params["t_projector.layers.0.bias"].shape == (6144,)
    assert params["sink.weight"].shape == (1, 1024)
