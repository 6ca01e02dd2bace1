"""Presets, modes and the errors that name the offending fields; packaging agreement."""

import dataclasses
import tomllib
from pathlib import Path

import pytest
import yaml

import xr0lab
from xr0lab.config import ConfigError, DiTConfig, ModeConfig, VLMConfig, XR0Config, preset

ROOT = Path(__file__).resolve().parent.parent


def test_presets_are_frozen_and_shaped():
    xr0 = preset("xr0")
    assert (xr0.dit.num_layers, xr0.dit.hidden_size, xr0.dit.num_heads) == (16, 1024, 8)
    assert (xr0.action.chunk_length, xr0.action.action_dim) == (30, 32)
    assert (xr0.vlm.num_layers, xr0.vlm.hidden_size, xr0.vlm.num_kv_heads) == (36, 2560, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        xr0.name = "x"
    tiny = preset("tiny")
    assert tiny.vlm.vocab_size == 151936 and tiny.vlm.patch_size == 16
    assert tiny.vlm.spatial_merge_size == 2 and tiny.dit.num_layers <= tiny.vlm.num_layers


def test_modes():
    release = preset("tiny").mode
    assert (release.action_attention, release.window, release.rope_offset) == ("causal", None, 0)
    assert not release.supports_prefix
    xa = preset("tiny", mode="xr0-async").mode
    assert (xa.action_attention, xa.window, xa.rope_offset, xa.prefix_hiding) == ("band", 4, 10, True)
    custom = preset("tiny", mode="xr0-async", window=2, rope_offset=0, num_steps=10)
    assert (custom.mode.window, custom.mode.rope_offset, custom.flow.num_steps) == (2, 0, 10)
    assert preset("tiny", mode="xr0-async", action_attention="full").mode.window is None
    assert ModeConfig.for_mode("xr0-async", action_attention="hard_block").window == 4


@pytest.mark.parametrize("build,fields", [
    (lambda: XR0Config(vlm=VLMConfig(), dit=DiTConfig(head_dim=64, hidden_size=1024)),
     "dit.head_dim"),
    (lambda: XR0Config(dit=DiTConfig(num_kv_heads=4)), "dit.num_kv_heads"),
    (lambda: preset("tiny", dit_layers=9), "dit.num_layers"),
    (lambda: preset("tiny", mode="xr0-async", window=-1), "window"),
    (lambda: ModeConfig(action_attention="band"), "window"),
    (lambda: ModeConfig(window=3), "window"),
    (lambda: preset("tiny", num_steps=0), "num_steps"),
    (lambda: preset("nano"), "unknown preset"),
    (lambda: preset("tiny", mode="fast"), "unknown mode"),
    (lambda: VLMConfig(mrope_section=(24, 20, 19)), "mrope_section"),
    (lambda: DiTConfig(hidden_size=1000), "hidden_size"),
])
def test_invalid_combinations_name_fields(build, fields):
    with pytest.raises(ConfigError, match=fields):
        build()


def test_meta_device_build_allocates_nothing():
    import torch

    with torch.device("meta"):
        model = xr0lab.XR0Model(preset("xr0"))
    assert not any(p.device.type != "meta" for p in model.parameters())


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {p for p in pip if not p.startswith("-e")}
    assert listed == wanted, (listed ^ wanted)
    assert "python>=3.11" in env["dependencies"]
    assert project["requires-python"] == ">=3.11"
    assert "flash-attn" not in " ".join(wanted)  # optional GPU extra only
    assert any("flash-attn" in d for d in project["optional-dependencies"]["flash"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash .ci/env python -m pytest"
    assert command in readme and command in ci
    assert "bash .ci/env python -m xr0lab walkthrough" in readme


def test_attention_falls_back_to_sdpa_without_flash_attn():
    from transformers.utils import is_flash_attn_2_available

    from xr0lab.model.vlm import resolve_attn_implementation

    if is_flash_attn_2_available():
        pytest.skip("flash-attn is installed here")
    assert resolve_attn_implementation(None) == "sdpa"
    assert resolve_attn_implementation("auto") == "sdpa"
    assert resolve_attn_implementation("eager") == "eager"
    with pytest.raises(ImportError, match="flash-attn is not installed"):
        resolve_attn_implementation("flash_attention_2")


def test_cli_rejects_unknown_commands(capsys):
    from xr0lab.cli import main

    with pytest.raises(SystemExit):
        main(["fly"])
    assert "invalid choice" in capsys.readouterr().err


def test_every_preset_has_the_released_timestep_width():
    """The released TimestepEmbedder hard-codes a 256-wide sinusoid, so every preset uses it and a
    checkpoint of any size has t_embedder.mlp.0.weight of shape (D, 256)."""
    import torch

    assert {name: preset(name).dit.timestep_dim for name in xr0lab.config.PRESETS} == {
        "xr0": 256, "mid": 256, "tiny": 256}
    with torch.device("meta"):
        expert = xr0lab.FlowActionExpert(preset("tiny"))
    assert tuple(expert.t_embedder.mlp[0].weight.shape) == (128, 256)


def test_mid_preset_between_tiny_and_xr0():
    mid = preset("mid")
    assert (mid.vlm.hidden_size, mid.dit.hidden_size, mid.dit.num_layers) == (512, 512, 8)
    assert mid.dit.head_dim == mid.vlm.head_dim and mid.dit.num_kv_heads == mid.vlm.num_kv_heads
