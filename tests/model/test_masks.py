"""Literal mask matrices for every regime (docs/architecture.md §4)."""

import pytest
import torch

from xr0lab.model.masks import (TokenLayout, action_attention_mask, dit_attention_mask,
                          sample_hidden_prefix)


def M(rows):
    return torch.tensor([[c == "1" for c in r.replace(" ", "")] for r in rows])


def test_release_full_mask_with_padding():
    prompt_mask = torch.tensor([[1, 1, 0]])  # last prompt token is padding
    mask = dit_attention_mask(prompt_mask, 3, kind="causal")
    expected = M([
        #  vlm  | sink state a0 a1 a2
        "110 10000",  # sink
        "110 11000",  # state
        "110 11100",  # a0
        "110 11110",  # a1
        "110 11111",  # a2
    ])
    assert mask.shape == (1, 5, 8)
    assert torch.equal(mask[0], expected)


def test_lambda_band_w4_literal():
    expected = M([
        "1000000",
        "1100000",
        "1110000",
        "1111000",
        "1111100",
        "0111110",
        "0011111",
    ])
    assert torch.equal(action_attention_mask(7, "band", window=4), expected)


@pytest.mark.parametrize("p", [0, 1, 2, 4, 6])
def test_band_blocks_direct_prefix_access_after_w(p):
    """Noisy token p + m sees prefix tokens only while m < w (docs/architecture.md §4)."""
    T, w = 12, 4
    mask = action_attention_mask(T, "band", window=w, prefix_length=p)
    for m in range(T - p):
        sees_prefix = bool(mask[p + m, :p].any())
        assert sees_prefix == (p > 0 and m < w), (p, m)


def test_band_equals_causal_when_window_covers_chunk():
    assert torch.equal(action_attention_mask(6, "band", window=5), action_attention_mask(6, "causal"))
    assert torch.equal(action_attention_mask(4, "band", window=0), torch.eye(4, dtype=torch.bool))


def test_hard_block_literal():
    expected = M([
        "10000000",
        "11000000",
        "11100000",
        "11110000",
        "00001000",
        "00001100",
        "00001110",
        "00001111",
    ])
    assert torch.equal(action_attention_mask(8, "hard_block", window=2, prefix_length=2), expected)
    # No prefix: nothing to block, plain causal.
    assert torch.equal(action_attention_mask(5, "hard_block", window=2), action_attention_mask(5, "causal"))


def test_full_mask():
    assert action_attention_mask(4, "full").all()


def test_prefix_hiding_literal():
    # T = 6, p = 5, w = 4; prefix columns 0 and 2 hidden from noisy rows only.
    hidden = torch.tensor([True, False, True, False, False])
    mask = dit_attention_mask(torch.ones(1, 1), 6, kind="band", window=4, prefix_length=5,
                              hidden_prefix=hidden)[0, 2:, 1 + 2:]
    expected = M([
        "100000",
        "110000",
        "111000",
        "111100",
        "111110",  # prefix row 4: unaffected by hiding
        "010111",  # noisy row 5: band [1..5] minus hidden {0, 2}
    ])
    assert torch.equal(mask, expected)


def test_sample_hidden_prefix_keeps_last_two():
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hidden_prefix(6, generator=g) for _ in range(2000)])
    assert not draws[:, -2:].any()
    rate = draws[:, :4].float().mean().item()
    assert 0.45 < rate < 0.55
    assert not sample_hidden_prefix(2, generator=g).any()
    assert sample_hidden_prefix(0).shape == (0,)


def test_sink_and_state_never_see_actions_and_actions_always_see_them():
    for kind, window in (("causal", None), ("band", 4), ("full", None), ("hard_block", 1)):
        mask = dit_attention_mask(torch.ones(2, 3), 8, kind=kind, window=window, prefix_length=3)
        lay = TokenLayout(3, 8, 3)
        dit = mask[:, :, 3:]
        assert not dit[:, :2, 2:].any(), kind
        assert dit[:, 2:, :2].all(), kind
        assert mask[:, :, lay.vlm].all(), kind


def test_layout_slices():
    lay = TokenLayout(prompt_length=10, chunk_length=30, prefix_length=4)
    assert lay.num_keys == 42
    assert (lay.sink, lay.state) == (slice(10, 11), slice(11, 12))
    assert (lay.prefix, lay.noisy) == (slice(12, 16), slice(16, 42))
    assert lay.query_segments()["noisy"] == slice(6, 32)


@pytest.mark.parametrize("bad", [
    dict(chunk_length=0, kind="causal"),
    dict(chunk_length=4, kind="band", window=None),
    dict(chunk_length=4, kind="band", window=-1),
    dict(chunk_length=4, kind="causal", prefix_length=5),
    dict(chunk_length=4, kind="diagonal"),
])
def test_bad_mask_arguments(bad):
    with pytest.raises(ValueError):
        action_attention_mask(**bad)
