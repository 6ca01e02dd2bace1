"""The static-shape DiT loop equals the ordinary sampler (its CUDA-graph capture needs a GPU)."""

import pytest
import torch

from xr0lab.latency.cuda_graph import StaticDiTLoop, compare_dit_loop

PROMPT = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")


@pytest.fixture(scope="module")
def setup(tiny_async_model, example_inputs):
    with torch.no_grad():
        ctx = tiny_async_model.prefill(**{k: example_inputs[k] for k in PROMPT})
    return tiny_async_model, ctx, example_inputs["state"], example_inputs["action_mask"]


def test_static_loop_is_bit_identical_to_sample(setup):
    model, ctx, state, mask = setup
    noise = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(0))
    loop = StaticDiTLoop(model, ctx, state, mask)
    with torch.no_grad():
        expected = model.sample(ctx, state, mask, noise=noise)
    assert torch.equal(loop(noise), expected)
    other = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loop(other), model.sample(ctx, state, mask, noise=other))


def test_static_loop_with_prefix_and_new_context(setup):
    model, ctx, state, mask = setup
    noise, prefix = torch.randn(2, 30, 32), torch.randn(2, 4, 32)
    loop = StaticDiTLoop(model, ctx, state, mask, prefix_length=4)
    with torch.no_grad():
        expected = model.sample(ctx, state, mask, noise=noise, prefix=prefix, prefix_length=4)
    out = loop(noise, prefix)
    assert torch.equal(out, expected) and torch.equal(out[:, :4], prefix)
    moved = ctx.replace(keys=tuple(k * 0 for k in ctx.keys))
    loop.update_context(moved)
    with torch.no_grad():
        assert torch.equal(loop(noise, prefix), model.sample(moved, state, mask, noise=noise,
                                                              prefix=prefix, prefix_length=4))


def test_static_loop_rejects_other_shapes(setup):
    model, ctx, state, mask = setup
    loop = StaticDiTLoop(model, ctx, state, mask)
    with pytest.raises(ValueError, match="static shape"):
        loop(torch.zeros(2, 29, 32))
    with pytest.raises(ValueError, match="prefix_length=0"):
        loop(torch.zeros(2, 30, 32), torch.zeros(2, 3, 32))
    with pytest.raises(ValueError, match="prompt_mask differs"):
        loop.update_context(ctx.replace(prompt_mask=ctx.prompt_mask.clone().fill_(True)
                                        .index_fill_(1, torch.tensor([0]), False)))
    with pytest.raises(ValueError, match="CUDA device"):
        StaticDiTLoop(model, ctx, state, mask, cuda_graph=True)


def test_compare_dit_loop_record(setup):
    from xr0lab.latency.devices import get_device

    model, ctx, state, mask = setup
    rec = compare_dit_loop(model, ctx, state, mask, device=get_device("h100-sxm"),
                           repeats=2)
    assert rec["cuda_graph"] is False and rec["static_p50_s"] > 0 and rec["eager_p50_s"] > 0
    assert rec["roofline_s"] > 0 and rec["static_over_roofline"] > 1  # CPU vs an H100 roofline
