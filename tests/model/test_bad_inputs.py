"""Inputs that used to give meaningless output (or a deep, unnamed error) now fail at once with a
message naming the argument and what was expected: `predict_actions`, the context-level `sample`,
`compute_loss`, configs and hook replacements."""

import pytest
import torch

import xr0lab
from xr0lab import ConfigError, XR0InputError

PROMPT = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")


@pytest.fixture(scope="module")
def context(tiny_model, example_inputs):
    with torch.no_grad():
        return tiny_model.prefill(**{k: example_inputs[k] for k in PROMPT})


def noise(batch=2, steps=30, seed=0):
    return torch.randn(batch, steps, 32, generator=torch.Generator().manual_seed(seed))


def with_nan(x, index, value=float("nan")):
    x = x.clone()
    x[index] = value
    return x


def vlm_calls(model):
    calls = []
    handle = model.vlm.model.language_model.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


# ----------------------------------------------------------------------------- predict_actions


@pytest.mark.parametrize("change,match", [
    (dict(action_mask=torch.zeros(2, 30, 32)),
     r"action_mask is all zero for sample\(s\) \[0, 1\]"),
    (dict(action_mask=torch.ones(2, 30, 32).index_fill_(0, torch.tensor([1]), 0)),
     r"action_mask is all zero for sample\(s\) \[1\]"),
    (dict(action_mask=torch.full((2, 30, 32), 0.5)),
     r"action_mask must hold only 0 and 1 .* got values such as \[0\.5\]"),
    (dict(noise=with_nan(noise(), (0, 3, 1))),
     r"noise contains NaN or inf \(first at index \[0, 3, 1\]\)"),
    (dict(noise=with_nan(noise(), (1, 0, 0), float("inf"))),
     r"noise contains NaN or inf \(first at index \[1, 0, 0\]\)"),
    (dict(noise=noise(), seed=0), r"pass either seed=0 or noise, not both"),
    (dict(noise=noise().long()), r"noise must be a floating-point tensor"),
    (dict(seed="abc"), r"seed must be an int .* got 'abc' \(str\)"),
    (dict(seed=1.5), r"seed must be an int .* got 1\.5 \(float\)"),
    (dict(seed=2**64), r"seed must lie in"),
    (dict(num_steps=2.5, seed=0), r"num_steps must be an int >= 1 .* got 2\.5 \(float\)"),
    (dict(num_steps=True, seed=0), r"num_steps must be an int >= 1 .* got True \(bool\)"),
    (dict(method="rk4", seed=0), r"method must be one of \('euler', 'midpoint', 'heun'\)"),
])
def test_predict_actions_refuses_before_the_prefill(tiny_model, example_inputs, change, match):
    inputs = dict(example_inputs, **change)
    calls, handle = vlm_calls(tiny_model)
    try:
        with pytest.raises(XR0InputError, match=match):
            tiny_model.predict_actions(**inputs)
    finally:
        handle.remove()
    assert calls == []  # nothing ran: the error came before the VLM


@pytest.mark.parametrize("where,value", [((0, 3), 151936 + 5), ((1, 2), -1)])
def test_input_ids_outside_the_vocabulary(tiny_model, example_inputs, where, value):
    ids = example_inputs["input_ids"].clone()
    ids[where] = value
    with pytest.raises(XR0InputError, match=rf"input_ids\[{where[0]}, {where[1]}\] = {value} is "
                       r"outside the vocabulary: token ids must lie in \[0, vocab_size=151936\)"):
        tiny_model.predict_actions(**dict(example_inputs, input_ids=ids), seed=0)


def test_zero_size_image_in_the_grid(tiny_model, example_inputs):
    """An image of 0 patches and 0 placeholder tokens is consistent by count, and meaningless."""
    ids = example_inputs["input_ids"][:1]
    ids = ids[:, ids[0] != 151655]  # the prompt with its image tokens removed
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                  pixel_values=torch.zeros(0, 1536), image_grid_thw=torch.tensor([[1, 0, 0]]),
                  state=example_inputs["state"][:1], action_mask=example_inputs["action_mask"][:1])
    with pytest.raises(XR0InputError, match=r"image_grid_thw\[0\] = \[1, 0, 0\]: image 0 has no "
                       r"patches"):
        tiny_model.predict_actions(**inputs, seed=0)


def test_prefix_length_must_be_an_int(tiny_async_model, example_inputs):
    with pytest.raises(XR0InputError, match=r"prefix_length must be an int .* got 2\.5"):
        tiny_async_model.predict_actions(**example_inputs, seed=0, prefix=torch.zeros(2, 3, 32),
                                         prefix_length=2.5)


def test_bool_action_mask_is_accepted_and_equals_the_float_one(tiny_model, example_inputs):
    mask = example_inputs["action_mask"]
    a = tiny_model.predict_actions(**example_inputs, seed=0, num_steps=1)
    b = tiny_model.predict_actions(**dict(example_inputs, action_mask=mask.bool()), seed=0,
                                   num_steps=1)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- sample (context)


@pytest.mark.parametrize("change,match", [
    (dict(prefix=torch.zeros(2, 3, 32), prefix_length=3),
     r"a prefix was given but the mode is 'release'"),
    (dict(state=torch.zeros(3, 1, 32)), r"state has batch size 3 but the context has 2"),
    (dict(state=torch.zeros(2, 1, 7)), r"state must have shape \(B, 1, 32\)"),
    (dict(state=torch.full((2, 1, 32), float("nan"))), r"state contains NaN or inf"),
    (dict(action_mask=torch.ones(1, 30, 32)), r"action_mask has batch size 1 but the context"),
    (dict(action_mask=torch.zeros(2, 30, 32)), r"action_mask is all zero"),
    (dict(action_mask=torch.full((2, 30, 32), 0.5)), r"action_mask must hold only 0 and 1"),
    (dict(noise=noise(batch=3)), r"noise must have shape \(2, 30, 32\), got \(3, 30, 32\)"),
    (dict(noise=with_nan(noise(), (0, 0, 0))), r"noise contains NaN or inf"),
    (dict(num_steps=0), r"num_steps must be an int >= 1 .* got 0"),
    (dict(num_steps=2.5), r"num_steps must be an int >= 1 .* got 2\.5"),
    (dict(prefix_length=3), r"prefix_length=3 given without a prefix tensor"),
])
def test_sample_checks_like_predict_actions(tiny_model, example_inputs, context, change, match):
    args = dict(state=example_inputs["state"], action_mask=example_inputs["action_mask"],
                noise=noise())
    args.update(change)
    with pytest.raises(XR0InputError, match=match), torch.no_grad():
        tiny_model.sample(context, args.pop("state"), args.pop("action_mask"), **args)


def test_sample_in_async_mode_commits_the_whole_prefix_by_default(tiny_async_model,
                                                                  example_inputs):
    inp = example_inputs
    with torch.no_grad():
        ctx = tiny_async_model.prefill(**{k: inp[k] for k in PROMPT})
        prefix = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(3))
        out = tiny_async_model.sample(ctx, inp["state"], inp["action_mask"], noise=noise(),
                                      prefix=prefix)
    assert torch.equal(out[:, :4], prefix)
    assert torch.equal(out, tiny_async_model.predict_actions(**inp, noise=noise(), prefix=prefix))
    # The per-call mode is the one checked: the same model called in release mode refuses it.
    with pytest.raises(XR0InputError, match="mode is 'release'"), torch.no_grad():
        tiny_async_model.sample(ctx, inp["state"], inp["action_mask"], noise=noise(),
                                prefix=prefix, mode="release")


@pytest.mark.parametrize("drop", ["pixel_values", "image_grid_thw"])
def test_pixels_and_grid_come_together(tiny_model, example_inputs, drop):
    inputs = dict(example_inputs, **{drop: None})
    with pytest.raises(XR0InputError, match=r"was given without " + drop):
        tiny_model.predict_actions(**inputs, seed=0)


# ----------------------------------------------------------------------------- compute_loss


def test_compute_loss_refuses_a_dead_mask_and_a_float_prefix_length(tiny_async_model,
                                                                    example_inputs):
    actions = torch.zeros(2, 30, 32)
    with pytest.raises(XR0InputError, match=r"action_mask is all zero"):
        tiny_async_model.compute_loss(**dict(example_inputs, action_mask=torch.zeros(2, 30, 32)),
                                      actions=actions)
    with pytest.raises(XR0InputError, match=r"prefix_length must be an int .* got 1\.5"):
        tiny_async_model.compute_loss(**example_inputs, actions=actions, prefix_length=1.5)



@pytest.mark.parametrize("model,p,match", [
    ("tiny_model", 2, r"prefix_length=2 needs mode 'xr0-async'"),
    ("tiny_async_model", 31, r"prefix_length must be in \[0, 30\]"),
    ("tiny_async_model", -1, r"prefix_length must be in \[0, 30\]"),
])
def test_compute_loss_checks_the_prefix_length_before_the_prefill(model, p, match, request,
                                                                  example_inputs):
    model = request.getfixturevalue(model)
    calls, handle = vlm_calls(model)
    try:
        with pytest.raises(XR0InputError, match=match):
            model.compute_loss(**example_inputs, actions=torch.zeros(2, 30, 32), prefix_length=p)
    finally:
        handle.remove()
    assert calls == []


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("make,match", [
    (lambda: xr0lab.ModeConfig(mode="xr0-async", action_attention="band", window=2.5),
     r"ModeConfig\.window must be an int or None, got 2\.5 \(float\)"),
    (lambda: xr0lab.preset("tiny", mode="xr0-async", window=2.5),
     r"ModeConfig\.window must be an int or None, got 2\.5"),
    (lambda: xr0lab.preset("tiny", mode="xr0-async", rope_offset=0.5),
     r"ModeConfig\.rope_offset must be an int, got 0\.5"),
    (lambda: xr0lab.preset("tiny", num_steps=2.5),
     r"FlowConfig\.num_steps must be an int, got 2\.5"),
    (lambda: xr0lab.preset("tiny", chunk_length=30.0),
     r"ActionConfig\.chunk_length must be an int, got 30\.0"),
    (lambda: xr0lab.preset("tiny", dit_layers=True), r"DiTConfig\.num_layers must be an int, got "
     r"True \(bool\)"),
])
def test_config_counts_must_be_ints(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


# ----------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("name,fn,error,match", [
    ("flow.hook_velocity", lambda x, hook: x[:, :10], ValueError,
     r"at flow\.hook_velocity returned a tensor of shape \(2, 10, 32\).*must match its input: "
     r"shape \(2, 30, 32\), dtype torch\.float32"),
    ("hook_prompt_mask", lambda x, hook: x.float(), ValueError,
     r"at hook_prompt_mask returned a tensor of shape \(2, \d+\), dtype torch\.float32.*dtype "
     r"torch\.bool"),
    ("flow.hook_velocity", lambda x, hook: x.tolist(), TypeError,
     r"at flow\.hook_velocity returned list; a hook returns None \(observe\) or a torch\.Tensor"),
])
def test_a_bad_hook_replacement_names_the_hook(tiny_model, example_inputs, name, fn, error,
                                               match):
    with pytest.raises(error, match=match), torch.no_grad():
        tiny_model.run_with_hooks(**example_inputs, seed=0, fwd_hooks=[(name, fn)])


def test_a_matching_hook_replacement_still_replaces(tiny_model, example_inputs):
    with torch.no_grad():
        zeroed = tiny_model.run_with_hooks(**example_inputs, seed=0, fwd_hooks=[
            ("flow.hook_velocity", lambda x, hook: torch.zeros_like(x))])
    torch.manual_seed(0)
    assert torch.equal(zeroed, torch.randn(2, 30, 32))  # zero velocity: the noise comes back
