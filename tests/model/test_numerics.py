"""Release numerics (docs/architecture.md §6): the released bf16 sampler and the server's RoPE
rounding, next to the precise default."""

import copy

import pytest
import torch

import xr0lab
from xr0lab.model.positions import (rope_cos_sin, rope_inv_freq, rope_phase_error,
                                    rotary_buffers_in)

PROMPT = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")


def _bf16_parameters(model):
    """bf16 parameters and float32 rotary buffers: what `load_pretrained(dtype=bf16)` builds."""
    for param in model.parameters():
        param.data = param.data.to(torch.bfloat16)
    return model


@pytest.fixture(scope="module")
def bf16_model(tiny_model):
    return _bf16_parameters(copy.deepcopy(tiny_model))


def _buffer_dtypes(model):
    return {name: buf.dtype for name, buf in model.named_buffers()}


def _bf16_euler(model, inp, *, seed: int, steps: int = 5):
    """The released loop written out by hand: noise drawn in bf16 after manual_seed(seed), x and
    t in bf16 through `steps` Euler steps over the model's own network calls."""
    context = model.prefill(**{k: inp[k] for k in PROMPT})
    setup = model.prepare(context, inp["state"], 30)
    with torch.random.fork_rng(devices=[]):  # the release seeding, without moving ours
        torch.manual_seed(seed)
        x = torch.randn(2, 30, 32, dtype=torch.bfloat16)
    for k in range(steps):
        t = torch.full((2,), k / steps, dtype=torch.bfloat16)
        x = x + (1 / steps) * model.denoise_step(setup, context, x, t, inp["action_mask"])
    return x


def test_release_numerics_is_the_hand_written_bf16_euler_loop(bf16_model, example_inputs):
    inp = example_inputs
    assert set(_buffer_dtypes(bf16_model).values()) == {torch.float32}
    actions, trace = bf16_model.predict_actions(**inp, seed=3, numerics="release",
                                                return_trace=True)
    assert actions.dtype == torch.bfloat16
    assert set(_buffer_dtypes(bf16_model).values()) == {torch.float32}  # restored after the call

    # The released stack: the server casts everything, rotary buffers included, to bf16; the
    # noise is drawn in bf16; x and t stay bf16 through the 5 Euler steps.
    server = copy.deepcopy(bf16_model).to(torch.bfloat16)
    assert set(_buffer_dtypes(server).values()) == {torch.bfloat16}
    with torch.no_grad():
        x = _bf16_euler(server, inp, seed=3)
    assert torch.equal(actions, x)
    assert trace.t.dtype == torch.bfloat16
    assert trace.t.tolist() == [0.0, 0.2001953125, 0.400390625, 0.6015625, 0.80078125]


def test_release_rope_rounding_is_part_of_it(bf16_model, example_inputs):
    """The same bf16 loop with the float32 rotary buffers is a different chunk: the rounding is
    not a no-op on the tiny preset, so the test above would catch it missing."""
    inp = example_inputs
    with torch.no_grad():
        x = _bf16_euler(bf16_model, inp, seed=3)
    release = bf16_model.predict_actions(**inp, seed=3, numerics="release")
    assert not torch.equal(release, x)


def test_precise_is_the_default_and_differs_in_bf16(bf16_model, tiny_model, example_inputs):
    precise = bf16_model.predict_actions(**example_inputs, seed=0)
    assert precise.dtype == torch.float32
    assert torch.equal(precise, bf16_model.predict_actions(**example_inputs, seed=0,
                                                           numerics="precise"))
    release = bf16_model.predict_actions(**example_inputs, seed=0, numerics="release")
    assert not torch.equal(precise, release.float())
    # A config that asks for release numerics gets them without the per-call argument.
    cfg = bf16_model.config.replace(flow=xr0lab.FlowConfig(numerics="release"))
    model = xr0lab.XR0Model(cfg).eval()
    model.load_state_dict(bf16_model.state_dict())
    model = _bf16_parameters(model)
    assert torch.equal(model.predict_actions(**example_inputs, seed=0), release)
    # For a float32 model there is nothing to round: the two numerics agree bit for bit.
    assert torch.equal(tiny_model.predict_actions(**example_inputs, seed=0),
                       tiny_model.predict_actions(**example_inputs, seed=0, numerics="release"))


def test_bad_numerics_named(tiny_model, example_inputs):
    with pytest.raises(xr0lab.XR0InputError, match="numerics must be 'precise' or 'release'"):
        tiny_model.predict_actions(**example_inputs, seed=0, numerics="bf16")
    with pytest.raises(xr0lab.ConfigError, match="FlowConfig.numerics"):
        xr0lab.FlowConfig(numerics="fast")
    assert xr0lab.preset("tiny", numerics="release").flow.numerics == "release"


def test_rotary_buffers_in_casts_and_restores(tiny_model):
    text = tiny_model.vlm.model.language_model.rotary_emb
    exact = text.inv_freq
    with rotary_buffers_in(tiny_model.vlm, torch.bfloat16):
        assert text.inv_freq.dtype == torch.bfloat16
        assert torch.equal(text.inv_freq, exact.to(torch.bfloat16))
        assert tiny_model.vlm.model.visual.rotary_pos_emb.inv_freq.dtype == torch.bfloat16
        assert next(tiny_model.vlm.parameters()).dtype == torch.float32  # parameters untouched
    assert text.inv_freq is exact


def test_pure_rope_rounding_matches_the_library_with_rounded_buffers(tiny_model):
    """The benchmark's rope_cos_sin with bf16 inv_freq is the library's rotary after `.to(bf16)`."""
    cfg = tiny_model.config.vlm
    pos = torch.randint(0, 500, (3, 2, 17), generator=torch.Generator().manual_seed(0))
    cos, sin = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta, cfg.mrope_section,
                            inv_freq_dtype=torch.bfloat16)
    with rotary_buffers_in(tiny_model.vlm, torch.bfloat16):
        ref_cos, ref_sin = tiny_model.rotary(pos)
    assert torch.allclose(cos, ref_cos, atol=1e-6) and torch.allclose(sin, ref_sin, atol=1e-6)
    exact_cos, _ = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
    assert not torch.allclose(cos, exact_cos, atol=1e-3)


def test_phase_error_of_bf16_inv_freq_at_full_size():
    """At full size (head dim 128, theta 5e6) bf16 inv_freq is off by up to 0.27 rad at position
    300; the library's own table is the one rounded."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    cfg = xr0lab.preset("xr0").vlm
    library = Qwen3VLTextRotaryEmbedding(cfg.to_hf().text_config).inv_freq  # 64 floats
    assert torch.equal(library, rope_inv_freq(cfg.head_dim, cfg.rope_theta))
    by_hand = (300 * (library.bfloat16().double() - library.double())).abs().max().item()
    assert rope_phase_error(cfg.head_dim, cfg.rope_theta, 300) == pytest.approx(by_hand)
    assert 0.26 < by_hand < 0.28
