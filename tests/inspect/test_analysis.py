"""Attention mass, K/V interventions on contexts, remapping, and the plots/widgets built on them."""

import pytest
import torch

import xr0lab
from xr0lab.inspect import attention, flow_steps, interventions
from xr0lab.model.masks import TokenLayout
from xr0lab.plots import attention as attention_plots
from xr0lab.plots import flow as flow_plots
from xr0lab.plots import masks as mask_plots
from xr0lab.plots import widgets


def _prefill(model, inputs, **kw):
    return model.prefill(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                         inputs["image_grid_thw"], **kw)


@pytest.fixture(scope="module")
def other_pixels(tiny_config, example_inputs):
    """The same prompt with other camera images (same token layout, different pixels)."""
    other = xr0lab.make_example_inputs(tiny_config, batch_size=2, seed=1)
    assert other["pixel_values"].shape == example_inputs["pixel_values"].shape
    return {**example_inputs, "pixel_values": other["pixel_values"]}


@pytest.fixture(scope="module")
def contexts(tiny_model, example_inputs, other_pixels):
    with torch.no_grad():
        return _prefill(tiny_model, example_inputs), _prefill(tiny_model, other_pixels)


def _sample(model, context, inputs, noise, **kw):
    with torch.no_grad():
        return model.sample(context, inputs["state"], inputs["action_mask"], noise=noise, **kw)


def test_zeroing_every_layer_makes_actions_independent_of_the_image(tiny_model, contexts,
                                                                    example_inputs):
    a, b = contexts
    noise = torch.randn(2, 30, 32)
    assert not torch.allclose(_sample(tiny_model, a, example_inputs, noise),
                              _sample(tiny_model, b, example_inputs, noise))
    za, zb = interventions.zero_kv(a), interventions.zero_kv(b)
    assert torch.equal(_sample(tiny_model, za, example_inputs, noise),
                       _sample(tiny_model, zb, example_inputs, noise))
    assert all(k.abs().sum() > 0 for k in a.keys)  # a new context; the original is untouched


def test_swap_equals_running_with_the_other_context(tiny_model, contexts, example_inputs):
    a, b = contexts
    noise = torch.randn(2, 30, 32)
    swapped = interventions.swap_kv(a, b)
    assert torch.equal(_sample(tiny_model, swapped, example_inputs, noise),
                       _sample(tiny_model, b, example_inputs, noise))
    one = interventions.swap_kv(a, b, [a.vlm_layers[1]], parts="v")
    assert one.keys[1] is a.keys[1] and one.values[1] is b.values[1]
    assert one.values[0] is a.values[0]


def test_mean_kv_is_constant_over_positions(contexts):
    a, _ = contexts
    m = interventions.mean_kv(a, [a.vlm_layers[0]])
    assert torch.allclose(m.keys[0], m.keys[0][:, :, :1].expand_as(m.keys[0]))
    assert m.keys[1] is a.keys[1]
    with pytest.raises(KeyError, match="keep_all_layers"):
        interventions.zero_kv(a, [0])  # VLM layer 0 does not feed the DiT in the tiny preset


def test_remap_context_and_all_layer_prefill(tiny_model, contexts, example_inputs):
    a, _ = contexts
    with torch.no_grad():
        full = _prefill(tiny_model, example_inputs, keep_all_layers=True)
    assert full.vlm_layers == tuple(range(8))
    paired = interventions.remap_context(full, tiny_model.config.vlm_layer_for_dit_layer)
    assert all(torch.equal(x, y) for x, y in zip(paired.keys + paired.values, a.keys + a.values))
    noise = torch.randn(2, 30, 32)
    with pytest.raises(ValueError, match="remap_context"):
        _sample(tiny_model, full, example_inputs, noise)
    early = interventions.remap_context(full, (0, 1, 2, 3))
    assert early.vlm_layers == (0, 1, 2, 3)
    assert not torch.allclose(_sample(tiny_model, early, example_inputs, noise),
                              _sample(tiny_model, a, example_inputs, noise))


def test_kv_layer_sweep_records(tiny_model, contexts, example_inputs):
    a, b = contexts
    records = interventions.kv_layer_sweep(tiny_model, a, example_inputs["state"],
                                           example_inputs["action_mask"],
                                           noise=torch.randn(2, 30, 32), other=b,
                                           kinds=("zero", "swap"))
    assert [(r["kind"], r["vlm_layer"]) for r in records] == [
        (k, j) for k in ("zero", "swap") for j in (4, 5, 6, 7, "all")]
    assert all(r["l2"] > 0 for r in records)


def test_attention_mass_by_segment(tiny_async_model, example_inputs, contexts):
    _, cache = tiny_async_model.run_with_cache(
        **example_inputs, seed=0, prefix=torch.randn(2, 30, 32), prefix_length=3,
        names_filter=["dit.layers.*.attn.hook_pattern", "hook_dit_mask"])
    assert attention.masked_attention_max(cache) == 0.0
    layout = TokenLayout(90, 30, 3)
    mass = attention.attention_mass(cache, layout, contexts[0].image_token_mask)
    assert mass.segments == ("vlm_image", "vlm_text", "sink", "state", "prefix", "noisy")
    assert mass.mass.shape == (5, 4, 2, 4, 6)
    torch.testing.assert_close(mass.mass.sum(-1), torch.ones(5, 4, 2, 4))
    whole = attention.attention_mass(cache, layout)  # no image mask: one vlm segment
    torch.testing.assert_close(whole.mass[..., 0], mass.mass[..., 0] + mass.mass[..., 1])
    # Λ band (w = 4), p = 3: noisy rows after the first 4 see no prefix, so the mean is small.
    assert 0 < mass.mass[..., 4].max() < 4 / 27
    assert mass.mean("step", "batch", "head").shape == (4, 6)
    assert len(mass.records()) == mass.mass.numel()


def test_step_sweep_and_convergence(tiny_model, contexts, example_inputs):
    a, _ = contexts
    noise = torch.randn(2, 30, 32)
    records = flow_steps.step_sweep(tiny_model, a, example_inputs["state"],
                                    example_inputs["action_mask"], noise=noise, steps=(1, 4),
                                    methods=("euler", "heun"), reference_steps=8,
                                    reference_method="euler")
    assert [(r["method"], r["steps"], r["evaluations"]) for r in records] == [
        ("euler", 1, 1), ("euler", 4, 4), ("heun", 1, 2), ("heun", 4, 8)]
    actions, trace = _sample(tiny_model, a, example_inputs, noise, record=True)
    dist = flow_steps.clean_estimate_convergence(trace, actions)
    assert dist.shape == (5, 2) and torch.allclose(dist[-1], torch.zeros(2), atol=1e-5)


def test_plots_and_static_widgets(tiny_async_model, example_inputs, contexts):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    (actions, trace), cache = tiny_async_model.run_with_cache(
        **example_inputs, seed=0, prefix=torch.randn(2, 30, 32), prefix_length=3,
        return_trace=True, names_filter=["dit.layers.*.attn.hook_pattern", "hook_dit_mask"])
    layout = TokenLayout(90, 30, 3)
    mass = attention.attention_mass(cache, layout, contexts[0].image_token_mask)
    figs = [mask_plots.plot_dit_mask(cache["hook_dit_mask"], layout),
            attention_plots.plot_attention_mass(mass, rows="step"),
            flow_plots.plot_flow_trajectories(trace),
            flow_plots.plot_chunk_evolution(trace, which="clean_estimate", final=actions),
            flow_plots.plot_action_chunks({"a": actions}),
            widgets.attention_explorer(cache, layout),  # no kernel under pytest: a figure
            widgets.flow_explorer(trace, actions)]
    assert all(isinstance(f, Figure) for f in figs)
    assert plt.get_fignums() == []  # nothing left open in pyplot
    assert not widgets.has_frontend()


def test_zero_and_swap_restricted_to_the_image_tokens(contexts):
    a, b = contexts
    image = a.image_token_mask                       # (B, L): the image columns only
    j = a.vlm_layers[2]
    z = interventions.zero_kv(a, [j], tokens=image)
    sel = image[:, None, :, None].expand_as(a.keys[2])
    assert (z.keys[2][sel] == 0).all() and (z.values[2][sel] == 0).all()
    assert torch.equal(z.keys[2][~sel], a.keys[2][~sel])      # text columns untouched
    assert z.keys[0] is a.keys[0]
    s = interventions.swap_kv(a, b, [j], tokens=image[0])     # (L,) works for every sample
    assert torch.equal(s.values[2][sel], b.values[2][sel])
    assert torch.equal(s.values[2][~sel], a.values[2][~sel])
    with pytest.raises(ValueError, match="tokens must be"):
        interventions.zero_kv(a, tokens=torch.ones(3, dtype=torch.bool))


def test_kv_variants_names_and_layers(contexts):
    a, b = contexts
    built = interventions.kv_variants(a, other=b, kinds=("swap", "zero"), vlm_layers=[5, 7],
                                      tokens=a.image_token_mask)
    assert list(built) == ["swap:5", "swap:7", "swap:all", "zero:5", "zero:7", "zero:all"]
    meta, ctx = built["zero:all"]
    assert meta == {"kind": "zero", "vlm_layer": "all"}
    untouched = [i for i, j in enumerate(a.vlm_layers) if j not in (5, 7)]
    assert all(ctx.keys[i] is a.keys[i] for i in untouched)
    with pytest.raises(ValueError, match="needs `other`"):
        interventions.kv_variants(a, kinds=("swap",))
    with pytest.raises(KeyError, match="keep_all_layers"):
        interventions.kv_variants(a, kinds=("zero",), vlm_layers=[0])


def test_mass_per_action_rows(tiny_async_model, example_inputs, contexts):
    p, w = 3, tiny_async_model.config.mode.window
    _, cache = tiny_async_model.run_with_cache(
        **example_inputs, seed=0, prefix=torch.randn(2, 30, 32), prefix_length=p,
        names_filter="dit.layers.*.attn.hook_pattern")
    layout = TokenLayout(90, 30, p)
    rows = attention.mass_per_action(cache, layout, "prefix")
    assert rows.shape == (5, 4, 2, 4, 30)
    assert (rows[..., p + w:] == 0).all()             # beyond the band edge: exactly nothing
    assert (rows[..., p:p + w] > 0).all()
    mass = attention.attention_mass(cache, layout)
    prefix = mass.mass[..., mass.segments.index("prefix")]
    torch.testing.assert_close(rows[..., p:].mean(-1), prefix)
    img = attention.mass_per_action(cache, layout, "vlm_image", contexts[0].image_token_mask)
    assert (img > 0).all()
    with pytest.raises(ValueError, match="unknown segment"):
        attention.mass_per_action(cache, layout, "vlm_image")   # needs the image mask


def test_step_sweep_distance_to_labels(tiny_model, contexts, example_inputs):
    a, _ = contexts
    noise = torch.randn(2, 30, 32)
    labels = torch.zeros(2, 30, 32)
    records = flow_steps.step_sweep(tiny_model, a, example_inputs["state"],
                                    example_inputs["action_mask"], noise=noise, steps=(2,),
                                    methods=("euler",), reference_steps=4,
                                    reference_method="euler", labels=labels)
    acts = _sample(tiny_model, a, example_inputs, noise, num_steps=2)
    expected = interventions.chunk_distance(acts, labels, example_inputs["action_mask"]).mean()
    assert records[0]["l2_label"] == pytest.approx(float(expected))


def test_new_plots_of_attention_and_interventions(tiny_async_model, example_inputs, contexts):
    import matplotlib.pyplot as plt
    import numpy as np

    from xr0lab.plots import interventions as intervention_plots
    from xr0lab.plots.segments import SEGMENT_COLOURS

    _, cache = tiny_async_model.run_with_cache(
        **example_inputs, seed=0, prefix=torch.randn(2, 30, 32), prefix_length=3,
        names_filter="dit.layers.*.attn.hook_pattern")
    layout = TokenLayout(90, 30, 3)
    mass = attention.attention_mass(cache, layout, contexts[0].image_token_mask)
    fig = attention_plots.plot_attention_mass_by_step(mass)
    bars = fig.axes[0].patches          # layer 0: steps x segments, stacked per segment
    from matplotlib.colors import to_hex
    assert to_hex(bars[0].get_facecolor()) == to_hex(SEGMENT_COLOURS["vlm_image"])
    heights = np.array([b.get_height() for b in bars]).reshape(len(mass.segments), 5)
    np.testing.assert_allclose(heights.sum(0), 1.0, atol=1e-5)   # each step's bar sums to 1
    rows = attention.mass_per_action(cache, layout, "prefix")
    fig = attention_plots.plot_mass_per_action_by_layer({"band": rows}, mass.layers,
                                                        prefix_length=3, window=4)
    assert len(fig.axes) == 5
    curve = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(curve, rows.mean(dim=(0, 1, 2, 3)).numpy(), rtol=1e-5, atol=1e-7)
    records = [{"kind": "intact", "vlm_layer": None, "angle_own": 10.0, "angle_far": 100.0},
               {"kind": "swap", "vlm_layer": 7, "angle_own": 80.0, "angle_far": 20.0}]
    fig = intervention_plots.plot_kv_target_effects(records, ["own", "far"])
    assert [b.get_height() for b in fig.axes[1].patches] == [20.0]
    assert fig.axes[0].get_lines()[0].get_ydata()[0] == 10.0   # the intact reference
    fig = flow_plots.plot_step_sweep([{"method": "euler", "steps": 1, "evaluations": 1, "l2": 1.0,
                                       "l2_label": 2.0}], x="steps", value="l2_label", log=False)
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [2.0]
    assert plt.get_fignums() == []
