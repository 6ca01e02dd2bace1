"""The released checkpoint format: key/shape table at full size (meta device), strict loading,
round trips, fixtures, config spellings of transformers 4.57 and 5.x, offline behaviour."""

import json
import time

import pytest
import torch
import transformers
from safetensors.torch import save_file

import xr0lab
from xr0lab.config import TINY_VLM
from xr0lab.io.checkpoint import load_pretrained, save_pretrained
from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.fixtures import random_released_state_dict, write_tiny_checkpoint
from xr0lab.io.hf_config import (config_from_dict, config_to_dict, vlm_config_from_dict,
                                 vlm_config_to_dict)
from xr0lab.io.weights import (INDEX_NAME, WEIGHTS_NAME, checkpoint_keys, expected_released_keys,
                               read_tensor_index)
from xr0lab.model.xr0 import XR0Model


TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _predict(model, inputs, **kwargs):
    return model.predict_actions(**inputs, seed=0, **kwargs)


# -- full-size structure, no allocation --------------------------------------------------------

# Qwen3-VL-4B keys computed by hand from docs/architecture.md §2 (text 36 x 2560, MLP 9728, 32 q / 8 kv
# heads of 128, vocab 151936; vision 24 x 1024, 16 heads, MLP 4096, patch 16, temporal 2,
# merge 2 -> merger input 1024 * 4 = 4096, output 2560, 48 x 48 = 2304 position embeddings).
QWEN3_VL_4B_KEYS = {
    "vlm.model.visual.patch_embed.proj.weight": (1024, 3, 2, 16, 16),
    "vlm.model.visual.patch_embed.proj.bias": (1024,),
    "vlm.model.visual.pos_embed.weight": (2304, 1024),
    "vlm.model.visual.blocks.0.norm1.weight": (1024,),
    "vlm.model.visual.blocks.0.norm1.bias": (1024,),
    "vlm.model.visual.blocks.0.attn.qkv.weight": (3072, 1024),
    "vlm.model.visual.blocks.0.attn.qkv.bias": (3072,),
    "vlm.model.visual.blocks.0.attn.proj.weight": (1024, 1024),
    "vlm.model.visual.blocks.23.mlp.linear_fc1.weight": (4096, 1024),
    "vlm.model.visual.blocks.23.mlp.linear_fc2.weight": (1024, 4096),
    "vlm.model.visual.merger.norm.weight": (1024,),  # merger: norm before the 2x2 shuffle
    "vlm.model.visual.merger.linear_fc1.weight": (4096, 4096),
    "vlm.model.visual.merger.linear_fc2.weight": (2560, 4096),
    "vlm.model.visual.merger.linear_fc2.bias": (2560,),
    "vlm.model.visual.deepstack_merger_list.0.norm.weight": (4096,),  # deepstack: after it
    "vlm.model.visual.deepstack_merger_list.2.linear_fc1.weight": (4096, 4096),
    "vlm.model.visual.deepstack_merger_list.2.linear_fc2.weight": (2560, 4096),
    "vlm.model.language_model.embed_tokens.weight": (151936, 2560),
    "vlm.model.language_model.layers.0.self_attn.q_proj.weight": (4096, 2560),
    "vlm.model.language_model.layers.0.self_attn.k_proj.weight": (1024, 2560),
    "vlm.model.language_model.layers.0.self_attn.v_proj.weight": (1024, 2560),
    "vlm.model.language_model.layers.0.self_attn.o_proj.weight": (2560, 4096),
    "vlm.model.language_model.layers.0.self_attn.q_norm.weight": (128,),
    "vlm.model.language_model.layers.0.self_attn.k_norm.weight": (128,),
    "vlm.model.language_model.layers.35.mlp.gate_proj.weight": (9728, 2560),
    "vlm.model.language_model.layers.35.mlp.up_proj.weight": (9728, 2560),
    "vlm.model.language_model.layers.35.mlp.down_proj.weight": (2560, 9728),
    "vlm.model.language_model.layers.35.input_layernorm.weight": (2560,),
    "vlm.model.language_model.layers.35.post_attention_layernorm.weight": (2560,),
    "vlm.model.language_model.norm.weight": (2560,),
}


def _numel(shapes):
    total = 0
    for shape in shapes:
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def test_xr0_meta_keys_and_shapes():
    config = xr0lab.preset("xr0")
    with torch.device("meta"):
        model = XR0Model(config)
    stored = checkpoint_keys(model)

    # DiT / projectors: exactly the spec table, nothing more, nothing less.
    dit_part = {k: v for k, v in stored.items() if not k.startswith("vlm.")}
    assert dit_part == expected_released_keys(config)
    # Qwen3-VL: the hand-computed sample, and the tied head is not stored.
    for key, shape in QWEN3_VL_4B_KEYS.items():
        assert stored.get(key) == shape, key
    assert "vlm.lm_head.weight" not in stored
    assert model.vlm.lm_head.weight is model.vlm.model.language_model.embed_tokens.weight
    # Key counts: text 1 + 36 * 11 + 1; vision 2 + 1 + 24 * 12 + 6 + 3 * 6; DiT 16 * 13 + 11.
    n_vlm = (1 + 36 * 11 + 1) + (2 + 1 + 24 * 12 + 6 + 3 * 6)
    assert len(stored) == n_vlm + 16 * 13 + 11

    # Spec section 3.3 counts.
    layer0 = [v for k, v in dit_part.items() if k.startswith("dit.layers.0.")]
    assert _numel(layer0) == 16_790_784
    assert _numel(v for k, v in dit_part.items() if k.startswith("dit.")) == 268_652_544
    assert _numel(v for k, v in dit_part.items() if not k.startswith("dit.")) == 9_805_824
    assert _numel(dit_part.values()) == 278_458_368
    assert _numel(stored.values()) == 4_716_274_176
    assert sum(p.numel() for p in model.parameters()) == 4_716_274_176


def test_tiny_keys_match_spec_table(tiny_model):
    stored = checkpoint_keys(tiny_model)
    assert ({k: v for k, v in stored.items() if not k.startswith("vlm.")}
            == expected_released_keys(tiny_model.config))


# -- round trips -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_dir(tiny_model, tmp_path_factory):
    """tiny_model (fp32) saved sharded: 3 shards at 10 MB (the 19 MB embedding gets its own)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_model.save_pretrained(path, max_shard_size="10MB")
    return path


@pytest.fixture(scope="module")
def loaded(saved_dir):
    return XR0Model.from_pretrained(saved_dir)


def test_save_layout(saved_dir, tiny_model):
    index = json.loads((saved_dir / INDEX_NAME).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all(f.startswith("model-0000") for f in files)
    assert not (saved_dir / WEIGHTS_NAME).exists()
    assert "vlm.lm_head.weight" not in index["weight_map"]  # tied head is not stored
    assert set(index["weight_map"]) == set(checkpoint_keys(tiny_model))
    config = json.loads((saved_dir / "config.json").read_text())
    assert config["model_type"] == "mibot"
    assert (config["state_length"], config["state_dim"]) == (1, 32)
    assert (config["action_length"], config["action_dim"]) == (30, 32)
    text = config["vlm_config"]["text_config"]
    assert "rope_parameters" not in text and text["rope_theta"] == 5e6  # 4.57 spelling
    assert text["rope_scaling"] == {"rope_type": "default", "mrope_section": [6, 5, 5],
                                    "mrope_interleaved": True}
    assert {"hidden_size", "num_hidden_layers", "head_dim",
            "num_key_value_heads"} <= set(config["dit_config"])


def test_round_trip_identical(tiny_model, loaded, example_inputs):
    assert _state_equal(tiny_model.state_dict(), loaded.state_dict())
    assert loaded.vlm.lm_head.weight is loaded.vlm.model.language_model.embed_tokens.weight
    assert not loaded.training and loaded.config.vlm == tiny_model.config.vlm
    assert loaded.config.dit == tiny_model.config.dit
    assert loaded.config.mode == tiny_model.config.mode
    assert torch.equal(_predict(tiny_model, example_inputs), _predict(loaded, example_inputs))


def test_load_leaves_global_rng_alone(saved_dir):
    before = torch.random.get_rng_state()
    load_pretrained(saved_dir)
    assert torch.equal(before, torch.random.get_rng_state())


def test_rotary_buffers_materialised(tiny_model, loaded):
    """Non-persistent buffers are in no checkpoint; they must equal a normally built model's."""
    ref = dict(tiny_model.named_buffers())
    got = dict(loaded.named_buffers())
    assert ref.keys() == got.keys() and any("inv_freq" in k for k in got)
    for name, buf in got.items():
        assert buf.device.type == "cpu" and torch.equal(buf, ref[name]), name


def test_dtype_cast_keeps_buffers_fp32(saved_dir, tiny_model):
    model = load_pretrained(saved_dir, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    ref = dict(tiny_model.named_buffers())
    for name, buf in model.named_buffers():
        assert buf.dtype == torch.float32 and torch.equal(buf, ref[name])
    assert torch.equal(model.sink.weight, tiny_model.sink.weight.to(torch.bfloat16))


def test_unsharded_single_file(tiny_model, tmp_path, example_inputs):
    save_pretrained(tiny_model, tmp_path)  # 5 GB default: one file
    assert (tmp_path / WEIGHTS_NAME).is_file() and not (tmp_path / INDEX_NAME).exists()
    model = load_pretrained(tmp_path)
    assert _state_equal(tiny_model.state_dict(), model.state_dict())
    # Re-saving sharded into the same directory removes the single file (no stale weights).
    save_pretrained(tiny_model, tmp_path, max_shard_size="10MB")
    assert (tmp_path / INDEX_NAME).is_file() and not (tmp_path / WEIGHTS_NAME).exists()


def test_independent_writer(tiny_model, tmp_path, example_inputs):
    """A directory written with plain safetensors + a hand-written 4.57-style config loads."""
    state = {k: v for k, v in tiny_model.state_dict().items() if k != "vlm.lm_head.weight"}
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[half:],  # deliberately not module order
              "model-00002-of-00002.safetensors": keys[:half]}
    for name, group in shards.items():
        save_file({k: state[k].contiguous() for k in group}, str(tmp_path / name))
    weight_map = {k: name for name, group in shards.items() for k in group}
    (tmp_path / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    v = TINY_VLM
    config = {
        "model_type": "mibot", "state_length": 1, "state_dim": 32, "action_length": 30,
        "action_dim": 32, "torch_dtype": "float32",
        # The released four dit_config fields: the timestep width is the hard-coded 256.
        "dit_config": {"hidden_size": 128, "num_hidden_layers": 4, "head_dim": 32,
                       "num_key_value_heads": 2, "some_future_field": "ignored"},
        "vlm_config": {
            "model_type": "qwen3_vl", "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "tie_word_embeddings": True,
            "text_config": {
                "vocab_size": 151936, "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size, "num_hidden_layers": v.num_layers,
                "num_attention_heads": v.num_heads, "num_key_value_heads": v.num_kv_heads,
                "head_dim": v.head_dim, "max_position_embeddings": v.max_position_embeddings,
                "rms_norm_eps": 1e-6, "hidden_act": "silu", "rope_theta": 5000000,
                "rope_scaling": {"rope_type": "default", "mrope_section": [6, 5, 5],
                                 "mrope_interleaved": True}},
            "vision_config": {
                "depth": v.vision_depth, "hidden_size": v.vision_hidden_size,
                "intermediate_size": v.vision_intermediate_size,
                "num_heads": v.vision_num_heads, "patch_size": 16, "temporal_patch_size": 2,
                "spatial_merge_size": 2, "out_hidden_size": v.hidden_size,
                "num_position_embeddings": v.num_position_embeddings,
                "deepstack_visual_indexes": list(v.deepstack_visual_indexes)}},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_pretrained(tmp_path)
    assert model.config.vlm == tiny_model.config.vlm and model.config.dit == tiny_model.config.dit
    assert model.config.mode.mode == "release"
    assert torch.equal(_predict(tiny_model, example_inputs), _predict(model, example_inputs))


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixtures")
    shuffled = write_tiny_checkpoint(root / "shuffled", seed=3, shuffle_shards=True)
    single = write_tiny_checkpoint(root / "single", seed=3, sharded=False, with_processor=False)
    return shuffled, single


def test_fixture_shuffled_shards_load(fixture_dirs, example_inputs):
    shuffled, single = fixture_dirs
    infos = read_tensor_index(shuffled)
    files = sorted({i.file.name for i in infos.values()})
    assert len(files) > 1
    # Shuffled: some shard mixes VLM and DiT keys, which module order would never do.
    assert any({k.startswith("vlm.") for k, i in infos.items() if i.file.name == f} == {True, False}
               for f in files)
    a, b = load_pretrained(shuffled), load_pretrained(single)
    assert _state_equal(a.state_dict(), b.state_dict())
    drawn = random_released_state_dict(a.config, seed=3)
    assert all(torch.equal(a.state_dict()[k], v.float()) for k, v in drawn.items())
    assert a.config.mode.mode == "release"  # a released config.json carries no mode
    processor = xr0lab.XR0Processor.from_pretrained(shuffled)
    assert {r: processor.horizon(r) for r in processor.list_robot_types()} == {
        "libero_all": 10, "bridge_delta": 4}
    inputs = dict(example_inputs, action_mask=processor.get_action_mask("bridge_delta", 2))
    actions = _predict(a, inputs)
    assert actions.shape == (2, 4, 32) and torch.isfinite(actions).all()
    assert processor.decode_action(actions, "bridge_delta").shape == (2, 4, 32)


def test_fixture_rejects_long_horizon(tmp_path):
    with pytest.raises(ValueError, match="horizon"):
        write_tiny_checkpoint(tmp_path, robot_types={"agibot": 31}, with_processor=False)


# -- strict loading and errors -----------------------------------------------------------------

def test_strict_load_lists_every_problem(saved_dir, tmp_path):
    state = load_pretrained(saved_dir).state_dict()
    state.pop("vlm.lm_head.weight")
    state.pop("dit.layers.1.attn.q_norm.weight")  # missing
    state["dit.layers.0.attn.extra.weight"] = torch.zeros(3)  # unexpected
    state["sink.weight"] = torch.zeros(1, 129)  # misshapen
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / WEIGHTS_NAME))
    (tmp_path / "config.json").write_text((saved_dir / "config.json").read_text())
    with pytest.raises(CheckpointError) as info:
        load_pretrained(tmp_path)
    msg = str(info.value)
    assert "1 missing" in msg and "dit.layers.1.attn.q_norm.weight" in msg
    assert "1 unexpected" in msg and "dit.layers.0.attn.extra.weight" in msg
    assert "1 shape mismatches" in msg and "sink.weight (1, 129) != model (1, 128)" in msg


def test_strict_load_truncates_long_lists(saved_dir, tmp_path):
    state = {k: v for k, v in load_pretrained(saved_dir).state_dict().items()
             if not k.startswith("dit.") and k != "vlm.lm_head.weight"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / WEIGHTS_NAME))
    (tmp_path / "config.json").write_text((saved_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"52 missing keys.*\(44 more\)"):
        load_pretrained(tmp_path)


def test_stored_tied_head_is_accepted_only_if_equal(tiny_model, tmp_path):
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    state["vlm.lm_head.weight"] = state["vlm.lm_head.weight"].clone()  # stored separately
    save_file(state, str(tmp_path / WEIGHTS_NAME))
    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(tiny_model.config)))
    model = load_pretrained(tmp_path)
    assert model.vlm.lm_head.weight is model.vlm.model.language_model.embed_tokens.weight
    state["vlm.lm_head.weight"] = state["vlm.lm_head.weight"] + 1
    save_file(state, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match="differs"):
        load_pretrained(tmp_path)


def test_stale_index_is_rejected(saved_dir, tmp_path):
    for f in saved_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    index["weight_map"]["sink.weight"] = next(n for n in sorted(set(index["weight_map"].values()))
                                              if n != index["weight_map"]["sink.weight"])
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="disagrees"):
        load_pretrained(tmp_path)


def test_nonexistent_path(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist") as info:
        load_pretrained(tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path / "empty")


@pytest.mark.parametrize("offline", ["1", None])
def test_hub_id_offline_fails_fast(tmp_path, monkeypatch, offline):
    monkeypatch.chdir(tmp_path)  # "Org/Name" is not a local directory here
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError, match=r"(?i)hub.*(offline|reach)"):
        load_pretrained("XiaomiRobotics/no-such-checkpoint")
    assert time.monotonic() - start < 15


# -- configs and modes -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "xr0"])
def test_config_round_trip(name):
    config = xr0lab.preset(name, mode="xr0-async", num_steps=7)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config))),
                            name=name) == config


def test_rope_spellings_4_57_and_5x():
    vlm = TINY_VLM
    old = vlm_config_to_dict(vlm)  # 4.57: rope_scaling + rope_theta
    assert vlm_config_from_dict(old) == vlm
    # What the installed library writes: rope_parameters on 5.x, rope_scaling + rope_theta on
    # 4.57 (CI runs this file under both).
    installed = vlm.to_hf().to_dict()
    text = installed["text_config"]
    if TRANSFORMERS_MAJOR >= 5:
        assert text["rope_parameters"] == {"rope_type": "default", "rope_theta": 5e6,
                                           "mrope_section": [6, 5, 5], "mrope_interleaved": True}
    else:
        assert text["rope_theta"] == 5e6 and "rope_parameters" not in text
        assert text["rope_scaling"] == {"rope_type": "default", "mrope_section": [6, 5, 5],
                                        "mrope_interleaved": True}
    assert vlm_config_from_dict(installed) == vlm
    new = json.loads(json.dumps(old))  # 5.x's spelling, read by hand on any library version
    new["text_config"]["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e6,
                                             "mrope_section": [6, 5, 5],
                                             "mrope_interleaved": True}
    del new["text_config"]["rope_scaling"], new["text_config"]["rope_theta"]
    assert vlm_config_from_dict(new) == vlm
    from transformers import Qwen3VLConfig  # the 4.57 dict, as released files hold it, builds
    hf_text = Qwen3VLConfig.from_dict(old).text_config  # the right rotary on either version
    rope = getattr(hf_text, "rope_parameters", None) or {"rope_theta": hf_text.rope_theta,
                                                         **hf_text.rope_scaling}
    assert rope["rope_theta"] == 5e6 and list(rope["mrope_section"]) == [6, 5, 5]
    bad = json.loads(json.dumps(new))
    bad["text_config"]["rope_theta"] = 1e4
    with pytest.raises(CheckpointError, match="must agree"):
        vlm_config_from_dict(bad)
    del old["text_config"]["rope_scaling"]
    with pytest.raises(CheckpointError, match="rope_scaling"):
        vlm_config_from_dict(old)


def test_config_errors_name_the_field():
    d = config_to_dict(xr0lab.preset("tiny"))
    with pytest.raises(CheckpointError, match="model_type"):
        config_from_dict(dict(d, model_type="qwen3_vl"))
    broken = json.loads(json.dumps(d))
    del broken["vlm_config"]["text_config"]["hidden_size"]
    with pytest.raises(CheckpointError, match=r"vlm_config\.text_config\.hidden_size"):
        config_from_dict(broken)
    broken = json.loads(json.dumps(d))
    broken["dit_config"]["head_dim"] = 64  # the DiT must share the VLM's head dim
    with pytest.raises(CheckpointError, match="head_dim"):
        config_from_dict(broken)


def test_mode_switch_on_load(saved_dir, tiny_async_model, example_inputs, tmp_path):
    model = load_pretrained(saved_dir, mode="xr0-async")
    m = model.config.mode
    assert (m.mode, m.action_attention, m.window, m.rope_offset) == ("xr0-async", "band", 4, 10)
    assert torch.equal(_predict(model, example_inputs), _predict(tiny_async_model, example_inputs))
    # A checkpoint xr0lab saved in xr0-async mode loads in that mode unless told otherwise.
    model.save_pretrained(tmp_path)
    assert load_pretrained(tmp_path).config.mode == m
    assert load_pretrained(tmp_path, mode="release").config.mode.mode == "release"
