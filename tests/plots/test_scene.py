"""Frames in world coordinates, with chunk paths drawn where the agent would go."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from xr0lab.plots import scene


def _frame(size=8):
    img = np.zeros((size, size, 3), np.uint8)
    img[0, size - 1] = 255   # top-right pixel: centre x = (7.5)/8, y = 1 - 0.5/8
    return img


def test_frames_are_drawn_in_world_coordinates_with_y_up():
    fig = scene.plot_frame(_frame())
    ax = fig.axes[0]
    im = ax.images[0]
    assert im.get_extent() == [0, 1, 0, 1] and im.origin == "upper"
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    # Rendered: the bright pixel (row 0, column 7) sits at its world centre x = 7.5 / 8,
    # y = 1 - 0.5 / 8 (render.py's convention), and the opposite corner stays dark.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())

    def shade(x, y):
        px, py = ax.transData.transform((x, y))
        return rgba[int(round(rgba.shape[0] - py)), int(round(px)), 0]

    assert shade(7.5 / 8, 1 - 0.5 / 8) == 255
    assert shade(0.5 / 8, 0.5 / 8) == 0 and shade(7.5 / 8, 0.5 / 8) == 0


def test_paths_land_where_given_and_the_expert_is_labelled():
    path = np.array([[0.5, 0.5], [0.6, 0.5], [0.7, 0.6]])
    fig = scene.plot_paths_on_frame(_frame(), {"model": path}, expert=path[::-1],
                                    expert_label="expert's plan",
                                    targets={"target": (np.array([0.2, 0.8]), "lime")})
    ax = fig.axes[0]
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert np.allclose(lines["model"].get_xydata(), path)
    assert np.allclose(lines["expert's plan"].get_xydata(), path[::-1])
    assert np.allclose(lines["target"].get_xydata(), [[0.2, 0.8]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["expert's plan", "model", "target"]


def test_scenes_and_flow_panels():
    images = np.stack([_frame(), _frame()])
    paths = np.zeros((2, 4, 2)) + 0.5
    fig = scene.plot_scenes(images, {"a": paths}, experts=paths,
                            targets={"t": (np.array([[0.1, 0.1], [0.9, 0.9]]), "red")},
                            titles=["one", "two"], suptitle="s")
    assert isinstance(fig, Figure) and len(fig.axes) == 2 and len(fig.legends) == 1
    target_b = [l for l in fig.axes[1].get_lines() if l.get_label() == "t"][0]
    assert np.allclose(target_b.get_xydata(), [[0.9, 0.9]])
    x_t = np.zeros((3, 4, 2)) + 0.5
    fig = scene.plot_flow_on_frame(_frame(), x_t, x_t, [0.0, 1 / 3, 2 / 3], final=x_t[0],
                                   expert=x_t[0], target=np.array([0.2, 0.2]))
    assert [a.get_title() for a in fig.axes] == ["step 0: t = 0.00", "step 1: t = 0.33",
                                                "step 2: t = 0.67", "final chunk (t = 1)"]


def test_plot_scenes_rejects_mismatched_targets():
    with pytest.raises(IndexError):
        scene.plot_scenes(np.stack([_frame()] * 2), {}, targets={"t": (np.zeros((1, 2)), "red")})
