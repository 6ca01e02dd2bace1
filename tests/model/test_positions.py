"""DiT positions and rotary tables (docs/architecture.md §5)."""

import torch

from xr0lab.model.positions import dit_positions, rope_cos_sin


def test_positions_continue_after_prompt_ignoring_padding():
    pos = torch.tensor([[0, 1, 2, 3, 1], [0, 1, 2, 1, 1]]).expand(3, 2, 5)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    out = dit_positions(pos, mask, chunk_length=3)
    assert out[0].tolist() == [[4, 5, 6, 7, 8], [3, 4, 5, 6, 7]]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_per_component_maximum():
    pos = torch.tensor([[[0, 1, 1, 5]], [[0, 1, 2, 5]], [[0, 3, 1, 5]]])  # image then text
    out = dit_positions(pos, torch.ones(1, 4), chunk_length=2)
    assert out[:, 0, 0].tolist() == [6, 6, 6]
    pos[1, 0, 3] = 9
    assert dit_positions(pos, torch.ones(1, 4), 2)[:, 0, 0].tolist() == [6, 10, 6]


def test_rope_offset_only_on_noisy_actions():
    pos = torch.arange(4).expand(3, 1, 4)
    release = dit_positions(pos, torch.ones(1, 4), 5)[0, 0].tolist()
    assert release == [4, 5, 6, 7, 8, 9, 10]
    no_prefix = dit_positions(pos, torch.ones(1, 4), 5, rope_offset=10)[0, 0].tolist()
    assert no_prefix == [4, 5, 16, 17, 18, 19, 20]
    prefix2 = dit_positions(pos, torch.ones(1, 4), 5, prefix_length=2, rope_offset=10)[0, 0].tolist()
    assert prefix2 == [4, 5, 6, 7, 18, 19, 20]


def test_rope_matches_library_text_rotary(tiny_model):
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 500, (3, 2, 17), generator=g)
    cfg = tiny_model.config.vlm
    for positions in (pos, pos[:1].expand(3, 2, 17)):
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
        ref_cos, ref_sin = tiny_model.rotary(positions)
        assert torch.allclose(cos, ref_cos, atol=1e-6) and torch.allclose(sin, ref_sin, atol=1e-6)
