"""The example model: the build command runs end to end and never overwrites; the checkpoint
switch; and, once a model is committed under data/example_model, that it loads strictly, its
training reproduces, its metrics are recomputed from its weights and it solves the task.

No model is committed yet (issue 16: the last build's post-trained checkpoint fell short of the
bar, docs/example_model.md §4), so the committed-model tests are marked `needs_model` and skip
until `python -m xr0lab example-model build` writes one that passes them.
"""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

import xr0lab
from xr0lab.example import evaluate
from xr0lab.example.load import example_dir, example_source
from xr0lab.example.train import settings_from_dict, stage1_losses

MODES = ("release", "xr0-async")
needs_model = pytest.mark.skipif(not (example_dir() / "metrics.json").exists(),
                                 reason="no example model is committed under data/example_model "
                                        "yet (issue 16)")


@pytest.fixture(scope="module")
def metrics():
    return json.loads((example_dir() / "metrics.json").read_text())


@needs_model
@pytest.mark.parametrize("mode", MODES)
def test_committed_checkpoint_loads_strictly_in_bf16_and_small(mode, metrics):
    directory = example_dir() / mode
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"BF16"}
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 50 * 2**20 and size == metrics["sizes"][mode]["bytes"]
    model = xr0lab.load_example_model(mode)      # strict by name: a missing key is an error
    assert model.config.mode.mode == mode
    assert (model.config.vlm.hidden_size, model.config.dit.num_layers) == (128, 4)   # tiny
    assert sum(p.numel() for p in model.parameters()) == metrics["parameters"]["total"]
    assert not model.training


def test_the_checkpoint_switch(monkeypatch, tmp_path):
    monkeypatch.delenv("XR0LAB_CHECKPOINT", raising=False)
    assert example_source().is_example
    if not (example_dir() / "xr0-async" / "config.json").exists():
        with pytest.raises(FileNotFoundError, match="example-model build"):
            xr0lab.load_example_model()
    monkeypatch.setenv("XR0LAB_CHECKPOINT", str(tmp_path))
    src = example_source("release")
    assert not src.is_example and src.path == tmp_path
    with pytest.raises(ValueError, match="mode must be one of"):
        example_source("fast")


@needs_model
def test_three_training_steps_reproduce_the_committed_loss_curve(metrics, tmp_path):
    settings = settings_from_dict(metrics["settings"])
    losses = stage1_losses(settings, 3, tmp_path)
    np.testing.assert_allclose(losses, metrics["training"]["stage1"]["loss_first"][:3],
                               rtol=1e-4)


@needs_model
@pytest.mark.parametrize("mode, condition", [("xr0-async", "S1|d=0"), ("release", "S1M|d=3")])
def test_committed_success_is_recomputed_from_the_checkpoint(mode, condition, metrics):
    scenario, delay = condition.split("|d=")
    n = 24
    row = metrics["success"][mode][condition]
    got = evaluate.success(xr0lab.load_example_model(mode), scenario, int(delay),
                           evaluate.test_seeds(n))
    mine = got["plain_per_episode"]
    theirs = row["plain_per_episode"][:n]
    # The committed run evaluated 256 episodes in one batch; batch size can move a float in the
    # last place, so one outcome of 24 may flip, never more.
    assert sum(a != b for a, b in zip(mine, theirs)) <= 1, (mine, theirs)


@needs_model
def test_the_committed_model_solves_the_task(metrics):
    s = metrics["success"]
    for mode in MODES:
        assert s[mode]["S1|d=0"]["success_plain"] >= 0.9, (mode, s[mode]["S1|d=0"])
        assert s[mode]["S1|d=0"]["episodes"] >= 256
        assert s[mode]["S1|d=0"]["plain_per_episode"].count("1") == round(
            s[mode]["S1|d=0"]["success_plain"] * s[mode]["S1|d=0"]["episodes"])


def test_quick_build_runs_the_same_code_and_never_overwrites(tmp_path):
    from xr0lab.cli import main

    out = tmp_path / "model"
    assert main(["example-model", "build", "--quick", "--out", str(out), "--run-dir",
                 str(tmp_path / "run"), "--no-progress"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert set(record["success"]) == set(MODES)
    assert set(record["success"]["release"]) == {"S1|d=0", "S1|d=3", "S1M|d=0", "S1M|d=3"}
    assert record["success"]["xr0-async"]["S1M|d=3"]["prefix_length"] == 3
    assert record["success"]["release"]["S1M|d=3"]["prefix_length"] == 0
    loaded = xr0lab.load_example_model(checkpoint=out / "xr0-async")
    assert loaded.config.mode.mode == "xr0-async"
    before = (out / "metrics.json").read_bytes()
    assert main(["example-model", "build", "--quick", "--out", str(out), "--run-dir",
                 str(tmp_path / "run"), "--no-progress"]) != 0
    assert (out / "metrics.json").read_bytes() == before
