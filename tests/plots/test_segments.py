"""The shared segment colour convention: complete, applied the same way by every mask figure."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from xr0lab.inspect.attention import key_segments
from xr0lab.model.masks import TokenLayout, dit_attention_mask
from xr0lab.plots import segments
from xr0lab.plots.masks import plot_dit_mask, plot_masks


def test_every_segment_the_code_names_has_a_colour_and_a_label():
    layout = TokenLayout(5, 6, 2)
    names = set(layout.segments()) | set(key_segments(layout, torch.ones(1, 5, dtype=torch.bool)))
    assert names <= set(segments.SEGMENT_COLOURS) == set(segments.SEGMENT_LABELS)
    assert segments.SEGMENTS == ("vlm", "vlm_image", "vlm_text", "sink", "state", "prefix", "noisy")
    # Distinct colours, except that the undivided prompt is drawn as its image tokens are.
    colours = [segments.SEGMENT_COLOURS[n] for n in segments.SEGMENTS if n != "vlm"]
    assert len(set(colours)) == len(colours)
    assert segments.SEGMENT_COLOURS["vlm"] == segments.SEGMENT_COLOURS["vlm_image"]
    assert segments.MASKED_COLOUR not in colours
    with pytest.raises(KeyError, match="known"):
        segments.segment_colour("nope")


def test_column_segments_and_the_index_image():
    layout = TokenLayout(3, 2, 1)
    assert segments.column_segments(layout) == ["vlm"] * 3 + ["sink", "state", "prefix", "noisy"]
    split = segments.column_segments(layout, torch.tensor([False, True, True]))
    assert split[:3] == ["vlm_text", "vlm_image", "vlm_image"]
    mask = np.array([[True, False, True], [False, True, True]])
    # 0 masked, else 1 + index in SEGMENTS: vlm_text 3, prefix 6, noisy 7
    assert segments.mask_segment_index(mask, ["vlm_text", "prefix", "noisy"]).tolist() == \
        [[3, 0, 7], [0, 6, 7]]
    with pytest.raises(ValueError, match="K = len"):
        segments.mask_segment_index(mask, ["prefix"])
    with pytest.raises(KeyError, match="unknown segments"):
        segments.mask_segment_index(mask, ["prefix", "noisy", "elsewhere"])


def test_the_colormap_draws_index_k_in_the_colour_of_segment_k():
    cmap, norm = segments.segment_cmap()
    assert to_hex(cmap(norm(0))) == to_hex(segments.MASKED_COLOUR)
    for i, name in enumerate(segments.SEGMENTS, start=1):
        assert to_hex(cmap(norm(i))) == to_hex(segments.SEGMENT_COLOURS[name])


def test_legend_lists_the_segments_in_order_and_the_masked_colour():
    from xr0lab.plots.figure import new_figure

    fig, axes = new_figure()
    leg = segments.segment_legend(axes[0][0], ["noisy", "vlm", "prefix", "noisy"])
    assert [t.get_text() for t in leg.get_texts()] == [
        "prompt (VLM K/V)", "clean prefix", "noisy actions", "masked (may not attend)"]
    leg = segments.segment_legend(axes[0][0], ["vlm_image", "vlm"], masked=False)
    assert [t.get_text() for t in leg.get_texts()] == ["prompt: image tokens"]


def test_dit_mask_cells_take_their_key_segment_colour():
    layout = TokenLayout(4, 5, 2)
    mask = dit_attention_mask(torch.ones(1, 4), 5, kind="band", window=1, prefix_length=2)
    fig = plot_dit_mask(mask, layout, image_token_mask=torch.tensor([[True, True, False, False]]))
    mesh = fig.axes[0].collections[0]
    cells = np.asarray(mesh.get_array()).reshape(layout.num_dit_tokens, layout.num_keys)
    expected = segments.mask_segment_index(
        mask[0], segments.column_segments(layout, torch.tensor([True, True, False, False])))
    assert cells.tolist() == expected.tolist()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["prompt: image tokens", "prompt: text tokens"]
    assert labels[-1] == "masked (may not attend)"
    fig = plot_masks({"a": (mask, layout), "b": (mask, layout)})
    assert len(fig.legends) == 1   # one legend for the row


def test_notebook_05_mask_figure_uses_the_shared_convention():
    from xr0lab.dynreach.figures import plot_masks as plot_action_masks
    from xr0lab.model.masks import action_attention_mask

    fig = plot_action_masks(chunk=8, prefix=2, windows=(1,))
    image = np.asarray(fig.axes[0].images[0].get_array())   # first panel: the full mask
    columns = ["prefix"] * 2 + ["noisy"] * 6
    assert image.tolist() == segments.mask_segment_index(
        action_attention_mask(8, "full"), columns).tolist()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "clean prefix", "noisy actions", "masked (may not attend)"]
