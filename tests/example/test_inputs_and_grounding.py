"""The example model's input path and grounding objective, checked against the real processor."""

import numpy as np
import pytest
import torch

from xr0lab.example.grounding import GroundingTask, answer_text
from xr0lab.example.inputs import patchify, prompt_ids, robot_inputs
from xr0lab.io.examples import example_processor


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 128, 96)])
def test_patchify_equals_the_qwen_image_processor(shape):
    b, h, w = shape
    frames = np.random.default_rng(0).integers(0, 256, (b, h, w, 3), dtype=np.uint8)
    out = example_processor(30)(images=[[f] for f in frames], instruction=["reach the target"] * b,
                                prompt_style="release-1view")
    pixels, grid = patchify(frames)
    assert torch.equal(grid, out["image_grid_thw"])
    assert torch.equal(pixels, out["pixel_values"].to(pixels.dtype))


def test_patchify_refuses_what_the_processor_would_resize():
    with pytest.raises(ValueError, match="multiples of 32"):
        patchify(np.zeros((1, 48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        patchify(np.zeros((1, 64, 64, 3), np.float32))


def test_robot_inputs_carry_the_processors_prompt_and_two_active_dims():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    state = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    inputs = robot_inputs(frames, state, ["reach the target"] * 2)
    ref = example_processor(30)(images=[[f] for f in frames], instruction=["reach the target"] * 2,
                                prompt_style="release-1view")
    assert torch.equal(inputs["input_ids"], ref["input_ids"])
    assert int((inputs["input_ids"][0] == 151655).sum()) == 4          # 64 px: 2 x 2 tokens
    assert inputs["state"][:, 0, :2].tolist() == [[-1.0, 1.0], [0.0, -0.5]]
    assert inputs["action_mask"].sum().item() == 2 * 30 * 2
    assert len(prompt_ids("reach the target", 128)) == len(prompt_ids("reach the target", 64)) + 12


def test_grounding_answers_and_labels():
    assert answer_text(np.array([[0.073, 0.5], [1.0, 0.0], [0.004, 0.996]])) == \
        ["(07,50)", "(99,00)", "(00,99)"]
    task = GroundingTask()
    ids, labels = task.encode(np.array([[0.12, 0.34]]), image_tokens=4)
    answer = ids[0][labels[0] != -100]
    assert task.tokenizer.decode(answer) == "(12,34)"
    assert torch.isin(answer, task.alphabet).all()
    assert (labels[0, :-len(answer)] == -100).all()


def test_grounding_loss_is_a_finite_cross_entropy_that_trains_the_vlm():
    import xr0lab
    from xr0lab.dynreach.data import generate, split_seeds

    torch.manual_seed(0)
    model = xr0lab.XR0Model(xr0lab.preset("tiny", vlm_layers=2, dit_layers=1, chunk_length=30))
    data = generate("S1", split_seeds("train", 2), horizon=30)
    task = GroundingTask()
    loss = task.loss(model, data, np.arange(4), 64)
    # 14-way alphabet at most: an untrained model sits near log(14)
    assert torch.isfinite(loss) and 0.5 < loss.item() < 5.0
    loss.backward()
    vision = model.vlm.model.visual.patch_embed.proj.weight.grad
    assert vision is not None and vision.abs().sum() > 0
