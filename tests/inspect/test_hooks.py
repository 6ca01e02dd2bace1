"""Hook machinery: names (a snapshot: names are API), temporary hooks, caches and filters."""

import pytest
import torch

from xr0lab.model.expert import FlowActionExpert
from xr0lab.inspect.cache import ActivationCache
from xr0lab.inspect.catalogue import hook_catalogue

PATTERN0 = "dit.layers.0.attn.hook_pattern"
VLM_PATTERN = "vlm.model.language_model.layers.{j}.self_attn.hook_pattern"

DIT_LAYER_SUFFIXES = [
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_vlm_k", "attn.hook_vlm_v",
    "attn.hook_scores", "attn.hook_pattern", "attn.hook_z",
    "hook_shift_attn", "hook_scale_attn", "hook_gate_attn", "hook_shift_mlp", "hook_scale_mlp",
    "hook_gate_mlp", "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out",
    "hook_resid_post",
]
TAIL = ["flow.hook_t", "flow.hook_x_t", "flow.hook_velocity", "flow.hook_clean_estimate",
        "flow.hook_x_next", "hook_dit_positions", "hook_dit_mask", "hook_actions",
        "hook_prompt_positions", "hook_prompt_mask"]


def test_hook_name_snapshot(tiny_model):
    expected = [f"dit.layers.{i}.{s}" for i in range(4) for s in DIT_LAYER_SUFFIXES] + TAIL
    assert list(tiny_model.hook_points) == expected
    opt_in = [f"vlm.model.language_model.layers.{j}.{s}" for s in
              ("hook_resid_post", "self_attn.hook_pattern") for j in range(8)]
    assert tiny_model.hook_names(opt_in=True) == expected + opt_in


def test_catalogue_documents_every_hook_point(tiny_model, tiny_config):
    cat = hook_catalogue(tiny_model)
    assert {n for n, info in cat.items() if not info.opt_in} == set(tiny_model.hook_points)
    expert = FlowActionExpert(tiny_config)
    assert set(hook_catalogue(expert)) == set(expert.hook_points)
    per_step = {n for n, info in cat.items() if info.per_step}
    assert per_step == {n for n in tiny_model.hook_points if n.startswith(("dit.", "flow."))}


def _no_hooks_left(model):
    assert not any(p.active for p in model.hook_points.values())
    assert not any(p.active for p in model._opt_in_points().values())
    assert model.vlm.model.language_model.config._attn_implementation == "sdpa"
    assert not any(layer._forward_hooks or layer.self_attn._forward_hooks
                   for layer in model.vlm.model.language_model.layers)


def test_temporary_hooks_removed_on_exception(tiny_model, example_inputs):
    def boom(x, hook):
        raise RuntimeError("inside a hook")

    hooks = [("flow.hook_x_t", lambda x, h: None), (PATTERN0, lambda x, h: None),
             (VLM_PATTERN.format(j=1), lambda x, h: None), ("dit.layers.1.hook_resid_post", boom)]
    with pytest.raises(RuntimeError, match="inside a hook"):
        tiny_model.run_with_hooks(**example_inputs, seed=0, fwd_hooks=hooks)
    _no_hooks_left(tiny_model)
    with pytest.raises(ValueError):
        with tiny_model.hooks(hooks[:3]):
            assert tiny_model.dit.layers[0].attn.explicit
            raise ValueError
    _no_hooks_left(tiny_model)


def test_unknown_names_raise_with_close_matches_and_attach_nothing(tiny_model, example_inputs):
    with pytest.raises(KeyError, match="close matches: dit.layers.0.attn.hook_pattern"):
        tiny_model.run_with_hooks(**example_inputs, fwd_hooks=[
            ("flow.hook_t", lambda x, h: None), ("dit.layers.0.attn.hook_patern", print)])
    with pytest.raises(KeyError, match="flow.hook_velocity"):
        tiny_model.run_with_cache(**example_inputs, names_filter=["flow.hook_velocty"])
    with pytest.raises(KeyError, match="matched nothing"):
        tiny_model.run_with_cache(**example_inputs, names_filter="dit.blocks.*")
    _no_hooks_left(tiny_model)


@pytest.mark.parametrize("mode", ["release", "xr0-async"])
def test_pattern_is_exactly_zero_where_masked(tiny_model, tiny_async_model, example_inputs, mode):
    model = tiny_model if mode == "release" else tiny_async_model
    extra = {} if mode == "release" else {"prefix": torch.randn(2, 30, 32), "prefix_length": 3}
    _, cache = model.run_with_cache(**example_inputs, seed=0, **extra, names_filter=[
        "dit.layers.*.attn.hook_pattern", "dit.layers.*.attn.hook_scores", "hook_dit_mask"])
    blocked = ~cache["hook_dit_mask"][None, :, None]  # (1, B, 1, S, L + S)
    for i in range(4):
        pattern = cache[f"dit.layers.{i}.attn.hook_pattern"]
        assert pattern.shape == (5, 2, 4, 32, 90 + 32)
        assert pattern.masked_select(blocked).abs().max() == 0
        scores = cache[f"dit.layers.{i}.attn.hook_scores"]
        assert torch.isneginf(scores.masked_select(blocked)).all()
        torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))


def test_explicit_and_sdpa_paths_give_the_same_actions(tiny_async_model, example_inputs):
    kw = dict(seed=3, prefix=torch.randn(2, 30, 32), prefix_length=2)
    sdpa = tiny_async_model.predict_actions(**example_inputs, **kw)
    explicit, cache = tiny_async_model.run_with_cache(
        **example_inputs, **kw, names_filter="dit.layers.*.attn.hook_pattern")
    assert len(cache) == 4
    torch.testing.assert_close(explicit, sdpa, atol=1e-5, rtol=1e-5)


def test_per_step_hooks_stack_along_a_step_axis(tiny_model, example_inputs):
    names = ["flow.hook_t", "flow.hook_x_t", "dit.layers.2.hook_resid_post", "hook_actions",
             "hook_dit_mask"]
    actions, cache = tiny_model.run_with_cache(**example_inputs, seed=0, num_steps=3,
                                               names_filter=names)
    assert isinstance(cache, ActivationCache) and cache.num_steps == 3
    assert cache["flow.hook_t"].shape == (3, 2)
    torch.testing.assert_close(cache["flow.hook_t"][:, 0], torch.tensor([0.0, 1 / 3, 2 / 3]))
    assert cache["dit.layers.2.hook_resid_post"].shape == (3, 2, 32, 128)
    assert cache["hook_actions"].shape == (2, 30, 32)  # once per call: no step axis
    assert torch.equal(cache["hook_actions"], actions)
    step = cache.step(1)
    assert torch.equal(step["flow.hook_x_t"], cache.at_step("flow.hook_x_t", 1))
    assert torch.equal(step["hook_dit_mask"], cache["hook_dit_mask"])
    with pytest.raises(ValueError, match="once per call"):
        cache.at_step("hook_actions", 0)

    # Heun evaluates the network twice per step; flow hooks stay once per step.
    _, heun = tiny_model.run_with_cache(**example_inputs, seed=0, num_steps=3, method="heun",
                                        names_filter=names[:3])
    assert heun["flow.hook_x_t"].shape[0] == 3
    assert heun["dit.layers.2.hook_resid_post"].shape[0] == 6
    assert torch.equal(heun.at_step("dit.layers.2.hook_resid_post", 1),
                       heun["dit.layers.2.hook_resid_post"][2])


def test_filters_keep_only_what_was_asked(tiny_model, example_inputs):
    def cached(names_filter):
        return set(tiny_model.run_with_cache(**example_inputs, seed=0,
                                             names_filter=names_filter)[1])

    assert cached("flow.hook_velocity") == {"flow.hook_velocity"}
    assert cached(["hook_dit_mask", "flow.hook_t"]) == {"hook_dit_mask", "flow.hook_t"}
    assert cached("dit.layers.*.attn.hook_pattern") == {
        f"dit.layers.{i}.attn.hook_pattern" for i in range(4)}
    assert cached(lambda n: n.endswith("hook_z")) == {f"dit.layers.{i}.attn.hook_z"
                                                      for i in range(4)}
    everything = cached(None)
    assert everything == set(tiny_model.hook_points)  # opt-in VLM hooks are never implied
    assert cached("*") == everything
    assert cached("vlm.*.self_attn.hook_pattern") == {VLM_PATTERN.format(j=j) for j in range(8)}


def test_caching_one_pattern_leaves_other_layers_on_sdpa(tiny_model, example_inputs):
    seen = []

    def probe(x, hook):
        seen.append([layer.attn.explicit for layer in tiny_model.dit.layers])

    with tiny_model.hooks([("dit.layers.3.hook_resid_post", probe)]):
        _, cache = tiny_model.run_with_cache(**example_inputs, seed=0, names_filter=PATTERN0)
    assert list(cache) == [PATTERN0]
    assert seen and all(flags == [True, False, False, False] for flags in seen)


def test_run_with_hooks_intervenes(tiny_model, example_inputs):
    noise = torch.randn(2, 30, 32)
    frozen = tiny_model.run_with_hooks(**example_inputs, noise=noise, fwd_hooks=[
        ("flow.hook_velocity", lambda v, hook: torch.zeros_like(v))])
    assert torch.equal(frozen, noise)  # no velocity: the chunk stays the noise


def test_sample_level_cache_against_a_context(tiny_model, example_inputs):
    inputs = example_inputs
    context = tiny_model.prefill(inputs["input_ids"], inputs["attention_mask"],
                                 inputs["pixel_values"], inputs["image_grid_thw"])
    noise = torch.randn(2, 30, 32)
    actions, cache = tiny_model.sample_with_cache(context, inputs["state"], inputs["action_mask"],
                                                  noise=noise, names_filter="hook_*")
    assert set(cache) == {"hook_dit_positions", "hook_dit_mask", "hook_actions"}  # no prefill here
    reference = tiny_model.predict_actions(**inputs, noise=noise)
    torch.testing.assert_close(actions, reference)


def test_opt_in_vlm_hooks(tiny_model, example_inputs):
    names = [VLM_PATTERN.format(j=2), "vlm.model.language_model.layers.2.hook_resid_post"]
    actions, cache = tiny_model.run_with_cache(**example_inputs, seed=0, names_filter=names)
    pattern = cache[names[0]]
    assert pattern.shape == (2, 4, 90, 90)
    real = example_inputs["attention_mask"].bool()
    torch.testing.assert_close(pattern.sum(-1)[real[:, None].expand(2, 4, 90)],
                               torch.ones(int(real.sum()) * 4))
    assert pattern.triu(diagonal=1).abs().max() == 0  # causal
    assert cache[names[1]].shape == (2, 90, 128)
    torch.testing.assert_close(actions, tiny_model.predict_actions(**example_inputs, seed=0),
                               atol=1e-5, rtol=1e-5)
    _no_hooks_left(tiny_model)
    with pytest.raises(ValueError, match="read-only"):
        tiny_model.run_with_hooks(**example_inputs, seed=0,
                                  fwd_hooks=[(names[0], lambda p, hook: p * 0)])
    _no_hooks_left(tiny_model)
