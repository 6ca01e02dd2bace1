"""The released XR-0 API's calls on xr0lab: each works, or fails naming xr0lab's spelling.

generate_actions, from_pretrained's transformers keywords, processor(text=instruction), the
action-statistics calls, the processor's hub-id path offline, torch.compile of the model (the
guard only: nothing is compiled), and transformers' Auto classes for "mibot".
"""

import json
import logging
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from xr0lab.config import IMAGE_PAD_ID
from xr0lab.io.checkpoint import read_config
from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.examples import synthetic_camera_image
from xr0lab.io.fixtures import write_tiny_checkpoint
from xr0lab.io.processor import XR0Processor
from xr0lab.model.checks import XR0InputError
from xr0lab.model.xr0 import XR0CompileError, XR0Model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A released-format tiny checkpoint: bf16 weights, libero_all (T=10), bridge_delta (T=4)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("released") / "tiny", seed=5)


@pytest.fixture(scope="module")
def model(ckpt):
    return XR0Model.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def processor(ckpt):
    return XR0Processor.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def views():
    return [synthetic_camera_image(1, 96, 128, "base"),
            synthetic_camera_image(1, 96, 128, "left_wrist")]


def _state():
    state = np.zeros(32, dtype=np.float32)
    state[:7] = [0.1, -0.2, 0.3, 0.0, 0.5, -0.1, 1.0]
    return state


# -- generate_actions ----------------------------------------------------------------------------

def test_seed_call_end_to_end(ckpt, views):
    """The seed's whole loop: load with transformers' keywords, a bare instruction as text=,
    generate_actions with the released argument names, decode with robot_type=."""
    model = XR0Model.from_pretrained(ckpt, torch_dtype=torch.float32, trust_remote_code=True,
                                     attn_implementation="sdpa")
    processor = XR0Processor.from_pretrained(ckpt, trust_remote_code=True)
    inputs = processor(images=views, text="put the bowl on the plate", return_tensors="pt")
    state = torch.from_numpy(_state()).view(1, 1, 32)
    mask = processor.get_action_mask(robot_type="libero_all")
    actions = model.generate_actions(**inputs, proprio_state=state, action_mask=mask,
                                     num_diffusion_steps=5, seed=42)
    expected = model.predict_actions(**inputs, state=state, action_mask=mask, num_steps=5, seed=42)
    assert actions.shape == (1, 10, 32) and torch.equal(actions, expected)
    robot = processor.decode_action(actions, robot_type="libero_all")
    mean, std = (torch.tensor(processor.action_config["libero_all"][k]) for k in ("mean", "std"))
    torch.testing.assert_close(robot, actions * std + mean)


def test_generate_actions_maps_each_released_name(model, processor, views):
    inputs = processor(images=views, instruction="open the drawer")
    state = torch.from_numpy(_state()).view(1, 1, 32)
    mask = processor.get_action_mask("bridge_delta")
    two = model.generate_actions(**inputs, proprio_state=state, action_mask=mask,
                                 num_diffusion_steps=2, seed=7)
    # num_diffusion_steps really is num_steps (2 steps differ from the default 5) ...
    assert torch.equal(two, model.predict_actions(**inputs, state=state, action_mask=mask,
                                                  num_steps=2, seed=7))
    assert not torch.equal(two, model.predict_actions(**inputs, state=state, action_mask=mask,
                                                      seed=7))
    # ... and proprio_state really is the state.
    other = model.generate_actions(**inputs, proprio_state=state + 1.0, action_mask=mask,
                                   num_diffusion_steps=2, seed=7)
    assert not torch.equal(two, other)
    # xr0lab's names pass through generate_actions too.
    assert torch.equal(two, model.generate_actions(**inputs, state=state, action_mask=mask,
                                                   num_steps=2, seed=7))


def test_generate_actions_errors_name_both_spellings(model, processor, views):
    inputs = processor(images=views, instruction="x")
    state = torch.zeros(1, 1, 32)
    mask = processor.get_action_mask("bridge_delta")
    with pytest.raises(XR0InputError, match=r"proprio_state=.*state=.*pass one"):
        model.generate_actions(**inputs, proprio_state=state, state=state, action_mask=mask)
    with pytest.raises(XR0InputError, match=r"num_diffusion_steps=.*num_steps="):
        model.generate_actions(**inputs, proprio_state=state, action_mask=mask,
                               num_diffusion_steps=3, num_steps=3)
    with pytest.raises(XR0InputError, match=r"proprio_state= \(xr0lab: state=\)"):
        model.generate_actions(**inputs, action_mask=mask)
    with pytest.raises(XR0InputError, match=r"action_mask=.*get_action_mask"):
        model.generate_actions(**inputs, proprio_state=state)


# -- from_pretrained's transformers keywords --------------------------------------------------

def test_from_pretrained_transformers_keywords(ckpt, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        model = XR0Model.from_pretrained(ckpt, torch_dtype=torch.bfloat16,
                                         trust_remote_code=True, attn_implementation="eager")
    # trust_remote_code is accepted silently: no warning, no log line.
    assert [str(w.message) for w in caught] == [] and caplog.records == []
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.vlm.config._attn_implementation == "eager"
    assert model.config.attn_implementation == "eager"
    # The fixture stores bf16: "auto" keeps it where the CPU default would be float32.
    assert XR0Model.from_pretrained(ckpt, torch_dtype="auto").dtype == torch.bfloat16
    assert XR0Model.from_pretrained(ckpt).dtype == torch.float32
    assert XR0Model.from_pretrained(ckpt, device_map="cpu").device == torch.device("cpu")


def test_from_pretrained_keyword_errors_name_xr0lab_spellings(ckpt):
    with pytest.raises(TypeError, match=r"torch_dtype=.*dtype=.*disagree.*xr0lab's name"):
        XR0Model.from_pretrained(ckpt, torch_dtype=torch.bfloat16, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"device_map=.*splits the model.*device='cuda'"):
        XR0Model.from_pretrained(ckpt, device_map={"vlm": 0, "dit": 1})
    with pytest.raises(TypeError,
                       match=r"\['load_in_8bit'\].*dtype, device.*torch_dtype \(= dtype\)"):
        XR0Model.from_pretrained(ckpt, load_in_8bit=True)
    with pytest.raises(TypeError, match="proxies=.*HTTPS_PROXY"):
        XR0Model.from_pretrained(ckpt, proxies={"https": "http://127.0.0.1:1"})


def test_subfolder_and_revision_like_transformers(ckpt, model):
    parent = ckpt.parent
    loaded = XR0Model.from_pretrained(parent, subfolder=ckpt.name)
    assert loaded.config.vlm == model.config.vlm
    with pytest.raises(CheckpointNotFoundError, match="subfolder 'nope' does not exist"):
        XR0Model.from_pretrained(parent, subfolder="nope")
    # The processor takes the same keywords (the Auto classes pass revision=None).
    assert XR0Processor.from_pretrained(parent, subfolder=ckpt.name, revision=None,
                                        _from_auto=True).list_robot_types() == \
        ["libero_all", "bridge_delta"]


# -- the processor ---------------------------------------------------------------------------

def test_bare_instruction_as_text(processor, views):
    a = processor(images=views, text="pick up the red block", return_tensors="pt")
    b = processor(images=views, instruction="pick up the red block")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    batch = [views, views[::-1]]
    a = processor(images=batch, text=["go", "stop now"])
    b = processor(images=batch, instruction=["go", "stop now"])
    assert all(torch.equal(a[k], b[k]) for k in b)
    # A finished prompt is still taken as it is (the released README's call).
    prompt = processor.tokenizer.decode(
        [t for i, t in enumerate(b["input_ids"][0].tolist())
         if b["attention_mask"][0, i] and not (t == IMAGE_PAD_ID == b["input_ids"][0, i - 1])])
    c = processor(images=views, text=[prompt])
    assert torch.equal(c["input_ids"], b["input_ids"][:1, :c["input_ids"].shape[1]])
    with pytest.raises(ValueError, match=r"mixes finished prompts \(entries \[1\]\).*"
                                         r"bare instructions \(entries \[0\]\)"):
        processor(images=batch, text=["go", prompt])


def test_action_statistics_seed_spellings(processor):
    mask = processor.get_action_mask(robot_type="bridge_delta")
    assert mask.shape == (1, 4, 32) and mask.dtype == torch.float32
    assert torch.equal(mask, processor.get_action_mask("bridge_delta"))
    actions = torch.linspace(-1, 1, 4 * 32).view(1, 4, 32)
    by_keyword = processor.decode_action(actions, robot_type="bridge_delta")
    assert torch.equal(by_keyword, processor.decode_action(actions, "bridge_delta"))
    mean, std = (torch.tensor(processor.action_config["bridge_delta"][k]) for k in ("mean", "std"))
    torch.testing.assert_close(by_keyword, actions * std + mean)


@pytest.mark.parametrize("how", ["env", "argument"])
def test_processor_hub_id_offline_fails_like_the_model(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)  # "Org/Name" is not a local directory here
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        kwargs["local_files_only"] = True
    errors = []
    start = time.monotonic()
    for load in (XR0Model.from_pretrained, XR0Processor.from_pretrained):
        with pytest.raises(CheckpointNotFoundError, match=r"Hub is disabled") as info:
            load("XiaomiRobotics/no-such-checkpoint", **kwargs)
        errors.append(str(info.value))
    assert time.monotonic() - start < 5
    assert errors[0] == errors[1]


def test_hub_id_from_a_cached_snapshot(ckpt, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's cache (stubbed here: no network): the
    processor asks for no weights, the model for its safetensors, both with the revision."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(ckpt)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.chdir(tmp_path)
    processor = XR0Processor.from_pretrained("XiaomiRobotics/tiny", revision="v1")
    model = XR0Model.from_pretrained("XiaomiRobotics/tiny", revision="v1", trust_remote_code=True)
    assert processor.list_robot_types() == ["libero_all", "bridge_delta"]
    assert model.config.vlm.num_layers == 8
    (_, p_kwargs), (_, m_kwargs) = calls
    assert p_kwargs["local_files_only"] and m_kwargs["local_files_only"]
    assert p_kwargs["revision"] == m_kwargs["revision"] == "v1"
    assert "*.safetensors" not in p_kwargs["allow_patterns"]
    assert "*.safetensors" in m_kwargs["allow_patterns"]


# -- torch.compile: the guard (nothing is compiled here) ----------------------------------------

def test_torch_compile_of_the_model_is_refused_with_the_supported_way(model, processor, views):
    inputs = processor(images=views, instruction="x", state=_state(), robot_type="bridge_delta")
    for attempt in (lambda: torch.compile(model, mode="reduce-overhead"),
                    lambda: model.compile(), lambda: model(**inputs), lambda: model.forward):
        with pytest.raises(XR0CompileError, match=r"(?s)no forward pass.*"
                                                  r"model\.denoise_step = torch\.compile\("
                                                  r"model\.denoise_step.*StaticDiTLoop"):
            attempt()
    # The advice works: an instance-level denoise_step is what predict_actions runs.
    calls = []
    step = model.denoise_step

    def counting(*args, **kwargs):
        calls.append(1)
        return step(*args, **kwargs)

    model.denoise_step = counting
    try:
        actions = model.predict_actions(**inputs, seed=0, num_steps=3)
    finally:
        del model.denoise_step
    assert len(calls) == 3
    assert torch.equal(actions, model.predict_actions(**inputs, seed=0, num_steps=3))


# -- transformers' Auto classes ------------------------------------------------------------

def test_import_registers_nothing():
    code = ("import xr0lab, xr0lab.io, xr0lab.io.auto\n"
            "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
            "before = 'mibot' in CONFIG_MAPPING\n"
            "xr0lab.register_auto_classes()\n"
            "print(before, 'mibot' in CONFIG_MAPPING)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == ["False", "True"]


def _released_layout(ckpt, tmp_path):
    """`ckpt` as a released directory would look to transformers: config.json naming the remote
    code in auto_map (which is absent), preprocessor_config.json without processor_class."""
    import shutil

    target = tmp_path / "released"
    shutil.copytree(ckpt, target)
    config = json.loads((target / "config.json").read_text())
    config["architectures"] = ["MiBoTForActionGeneration"]
    config["auto_map"] = {"AutoConfig": "configuration_mibot.MiBotConfig",
                          "AutoModel": "modeling_mibot.MiBoTForActionGeneration"}
    (target / "config.json").write_text(json.dumps(config))
    pre = json.loads((target / "preprocessor_config.json").read_text())
    for key in ("processor_class", "prompt_style", "image_resize", "xr0_max_pixels",
                "action_dim"):
        pre.pop(key)
    (target / "preprocessor_config.json").write_text(json.dumps(pre))
    return target


@pytest.mark.parametrize("layout", ["xr0lab", "released"])
def test_auto_classes_return_xr0lab_classes(ckpt, model, processor, views, tmp_path, layout):
    from transformers import AutoConfig, AutoModel, AutoProcessor

    import xr0lab
    from xr0lab.io.auto import MiBotConfig

    xr0lab.register_auto_classes()
    xr0lab.register_auto_classes()  # idempotent
    directory = ckpt if layout == "xr0lab" else _released_layout(ckpt, tmp_path)
    config = AutoConfig.from_pretrained(directory)
    assert type(config) is MiBotConfig
    assert config.to_xr0_config() == read_config(directory)
    auto_model = AutoModel.from_pretrained(directory, torch_dtype=torch.float32)
    auto_processor = AutoProcessor.from_pretrained(directory)
    assert type(auto_model) is XR0Model and type(auto_processor) is XR0Processor
    assert auto_processor.action_config == processor.action_config
    inputs = auto_processor(images=views, instruction="x", state=_state(),
                            robot_type="libero_all")
    assert torch.equal(auto_model.predict_actions(**inputs, seed=3),
                       model.predict_actions(**inputs, seed=3))


def test_auto_config_checks_the_file(ckpt, tmp_path):
    from xr0lab.io.auto import MiBotConfig

    config = json.loads((ckpt / "config.json").read_text())
    del config["vlm_config"]["text_config"]["hidden_size"]
    with pytest.raises(CheckpointError, match=r"vlm_config\.text_config\.hidden_size"):
        MiBotConfig(**config)
    # The default (the full-size shape) is what transformers builds to diff configs on save.
    assert MiBotConfig().to_xr0_config().vlm.num_layers == 36
    saved = MiBotConfig.from_pretrained(ckpt)
    saved.save_pretrained(tmp_path)
    assert MiBotConfig.from_pretrained(tmp_path).to_xr0_config() == saved.to_xr0_config()
