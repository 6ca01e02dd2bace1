"""Token positions on one axis: the values the model uses, and the +10 gap drawn."""

import numpy as np
import pytest
import torch

from xr0lab.plots.positions import noisy_gap, plot_positions, segment_positions


def _prompt(length=6, images=(2, 3)):
    positions = torch.arange(length).expand(3, 1, length).clone()
    image = torch.zeros(1, length, dtype=torch.bool)
    image[0, list(images)] = True
    return positions, torch.ones(1, length), image


def test_segment_positions_follow_the_prompt_and_skip_the_offset():
    positions, mask, image = _prompt()
    release = segment_positions(positions, mask, 4)
    assert {k: v.tolist() for k, v in release.items()} == {
        "vlm": [0, 1, 2, 3, 4, 5], "sink": [6], "state": [7], "prefix": [], "noisy": [8, 9, 10, 11]}
    post = segment_positions(positions, mask, 4, prefix_length=2, rope_offset=10,
                             image_token_mask=image)
    assert {k: v.tolist() for k, v in post.items()} == {
        "vlm_image": [2, 3], "vlm_text": [0, 1, 4, 5], "sink": [6], "state": [7],
        "prefix": [8, 9], "noisy": [20, 21]}
    assert noisy_gap(release) == 0 and noisy_gap(post) == 10


def test_padding_is_left_out_and_the_dit_tokens_follow_the_last_real_token():
    positions, _, _ = _prompt()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    out = segment_positions(positions, mask, 2)
    assert out["vlm"].tolist() == [0, 1, 2, 3] and out["sink"].tolist() == [4]


def test_noisy_gap_needs_both_sides():
    with pytest.raises(ValueError):
        noisy_gap({"noisy": np.array([3])})


def test_plot_positions_marks_the_gap():
    positions, mask, image = _prompt()
    rows = {"release": segment_positions(positions, mask, 4),
            "xr0-async": segment_positions(positions, mask, 4, prefix_length=1, rope_offset=10)}
    fig = plot_positions(rows)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("+10 gap") == 2        # the xr0-async row, in both panels
    # the zoom runs from the sink - 2 to the last noisy token + 1
    assert len(fig.axes) == 2 and fig.axes[1].get_xlim() == (4.0, 22.0)
