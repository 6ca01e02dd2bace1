"""Bad processor and checkpoint inputs fail with a message that names the argument, the image or
the file: instructions of the wrong type, empty and overlong images, truncated or corrupt shards,
and weight dtypes (names accepted, non-float dtypes refused)."""

import shutil

import numpy as np
import pytest
import torch

from xr0lab.io.action_stats import default_action_config
from xr0lab.io.checkpoint import load_pretrained, resolve_dtype, save_pretrained
from xr0lab.io.errors import CheckpointError
from xr0lab.io.examples import synthetic_camera_image
from xr0lab.io.fixtures import write_tiny_checkpoint
from xr0lab.io.processor import XR0Processor
from xr0lab.io.weights import read_tensor_index


@pytest.fixture(scope="module")
def processor() -> XR0Processor:
    return XR0Processor.build(default_action_config())


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_camera_image(0, 64, 64)


# ----------------------------------------------------------------------------- processor


@pytest.mark.parametrize("instruction,match", [
    (5, r"instruction must be a str \(one observation\) or a list of str \(a batch\), got int 5"),
    (["go", 7], r"instruction\[1\] must be a str, got int 7"),
    (b"go", r"instruction\[0\] must be a str, got int 103"),
])
def test_instruction_type(processor, image, instruction, match):
    images = [[image, image]] * (len(instruction) if isinstance(instruction, list) else 1)
    if not isinstance(instruction, list):
        images = images[0]
    with pytest.raises(TypeError, match=match):
        processor(images=images, instruction=instruction)


def test_text_type(processor, image):
    with pytest.raises(TypeError, match=r"text must be a str .* got float 1\.0"):
        processor(images=[image], text=1.0)


@pytest.mark.parametrize("resize", ["release", "xr0", "none"])
def test_zero_size_image_is_named(processor, image, resize):
    empty = np.zeros((0, 0, 3), np.uint8)
    with pytest.raises(ValueError, match=r"images\[0\]\[1\] \(observation 0, view 1\) is 0x0 "
                       r"\(height x width\): an empty image gives no visual tokens"):
        processor(images=[image, empty], instruction="go", image_resize=resize)


def test_an_empty_float_tensor_image_is_named(processor, image):
    with pytest.raises(ValueError, match=r"images\[0\]\[1\].* is 0x5 \(height x width\): an empty "
                       r"image gives no visual tokens"):
        processor(images=[image, torch.zeros(3, 0, 5)], instruction="go")


@pytest.mark.parametrize("resize", ["release", "xr0"])
def test_overlong_image_is_named(processor, image, resize):
    wide = np.zeros((8, 4000, 3), np.uint8)
    with pytest.raises(ValueError, match=r"images\[1\]\[0\] \(observation 1, view 0\) is 8x4000 "
                       r"\(height x width\): its aspect ratio 500\.0 exceeds 200"):
        processor(images=[[image, image], [wide, image]], instruction=["a", "b"],
                  image_resize=resize)


def test_aspect_ratio_at_the_limit_is_accepted(processor, image):
    out = processor(images=[image, np.zeros((32, 6400, 3), np.uint8)], instruction="go",
                    image_resize="xr0")
    assert out["image_grid_thw"].shape == (2, 3)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


def _broken_copy(checkpoint, tmp_path, damage):
    copy = tmp_path / "broken"
    shutil.copytree(checkpoint, copy)
    shard = sorted(copy.glob("model-*.safetensors"))[1]
    raw = shard.read_bytes()
    shard.write_bytes(damage(raw))
    return copy, shard


@pytest.mark.parametrize("damage,detail", [
    (lambda raw: raw[: len(raw) // 2], "incomplete metadata"),
    (lambda raw: raw[:8] + b"{not json" + raw[17:], "invalid JSON"),
    (lambda raw: b"", "HeaderTooSmall|header too small|too small"),
])
def test_a_damaged_shard_is_named(checkpoint, tmp_path, damage, detail):
    copy, shard = _broken_copy(checkpoint, tmp_path, damage)
    for load in (lambda: read_tensor_index(copy), lambda: load_pretrained(copy)):
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert str(shard) in message and "truncated or corrupt" in message
        assert any(d.lower() in message.lower() for d in detail.split("|")), message


@pytest.mark.parametrize("name,expected", [
    ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16), ("torch.float16", torch.float16),
    ("FP32", torch.float32), (torch.float64, torch.float64), (None, None),
])
def test_dtype_names(name, expected):
    assert resolve_dtype(name) is expected


def test_dtype_by_name_loads_the_same_weights(checkpoint):
    by_name = load_pretrained(checkpoint, dtype="bfloat16")
    by_dtype = load_pretrained(checkpoint, dtype=torch.bfloat16)
    assert by_name.dtype == torch.bfloat16
    a, b = by_name.state_dict(), by_dtype.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype,error,match", [
    (torch.int8, ValueError, r"dtype=torch\.int8 cannot hold the model's weights"),
    (torch.float8_e4m3fn, ValueError, r"dtype=torch\.float8_e4m3fn cannot hold"),
    ("int8", ValueError, r"dtype='int8' is not a floating dtype name; use torch\.bfloat16"),
    (16, TypeError, r"dtype must be a torch\.dtype or a dtype name, got int 16"),
])
def test_bad_dtypes_are_refused_before_loading(checkpoint, tmp_path, dtype, error, match):
    with pytest.raises(error, match=match):
        load_pretrained(checkpoint, dtype=dtype)
    model = load_pretrained(checkpoint)
    with pytest.raises(error, match=match):
        save_pretrained(model, tmp_path / "out", dtype=dtype)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("content,match", [
    ("{not json", r"preprocessor_config\.json is not valid JSON"),
    ("[1, 2]", r"preprocessor_config\.json must hold a JSON object, got list"),
    ('{"min_pixels": "many"}', r"preprocessor_config\.json: "),
])
def test_a_broken_preprocessor_config_is_named(checkpoint, tmp_path, content, match):
    copy = tmp_path / "broken"
    shutil.copytree(checkpoint, copy)
    (copy / "preprocessor_config.json").write_text(content)
    with pytest.raises(CheckpointError, match=match):
        XR0Processor.from_pretrained(copy)
