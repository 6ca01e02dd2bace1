"""Findings text and figures of the DynReach notebooks, on a small hand-made results dict."""

import numpy as np
import pytest

from xr0lab.dynreach import figures, findings
from xr0lab.dynreach.results import delay_rows, scenarios_in, window_arms


def _est(mean, low, high):
    return {"mean": mean, "low": low, "high": high}


def _entry(delay, success, ert):
    return {"delay": delay, "jitter": False, "prefix_length": max(delay, 1),
            "success_cup": _est(*success), "ert": _est(*ert)}


RESULTS = {
    "conditions": {
        "A3": {"S1E|d=4": _entry(4, (0.80, 0.75, 0.85), (2.50, 2.00, 3.00)),
               "S1E|d=0": _entry(0, (0.90, 0.85, 0.95), (1.00, 0.50, 1.50))},
        "A5": {"S1E|d=4": _entry(4, (0.70, 0.65, 0.75), (1.25, 1.00, 1.50))},
    },
    "secondary": [
        {"a": "A3", "b": "A5", "condition": "S1E|d=4", "metric": "ert", "mean": 1.25,
         "low": 0.5, "high": 2.0, "p_value": 0.003, "p_holm": 0.012},
        {"a": "A3", "b": "A5", "condition": "S1E|d=4", "metric": "spill_cup", "mean": 9.0,
         "low": 8.0, "high": 10.0, "p_value": 0.25, "p_holm": 0.5},
    ],
    "conflict_wall": {"A3": {"C": [None] * 4 + [0.5] * 4 + [0.25] * 8,
                             "late_distance_fresh": 0.0123, "late_distance_stale": 0.0456}},
}


def test_findings_scenarios_reads_every_number_from_the_results():
    text = findings.findings_scenarios(RESULTS)
    lines = text.splitlines()
    assert lines[0] == ("S1E (early jump, agent moving), d = 4, cup success / ERT (ticks): "
                        "A3 80.0% [75.0, 85.0] / 2.50 [2.00, 3.00]; "
                        "A5 70.0% [65.0, 75.0] / 1.25 [1.00, 1.50].")
    assert lines[1] == ("  ERT(A3) - ERT(A5) in S1E: +1.25 ticks [+0.50, +2.00], p = 0.003, "
                        "Holm p = 0.012, significant by v1's seed+episode bootstrap, too narrow "
                        "with 3-5 seeds.")
    assert "spill" not in text                 # only the ERT contrasts are quoted
    assert lines[2] == ("S3 conflict test (stale straight-line prefix, wall in the image): A3 "
                        "C(k >= 8) = 0.25, late actions 0.0123 from the detour vs 0.0456 from "
                        "the stale straight plan.")


def test_one_seed_findings_print_no_p_values():
    one = dict(RESULTS, meta={"cells": ["A3_seed0", "A5_seed0"]})
    text = findings.findings_scenarios(one)
    assert "p =" not in text and "significant" not in text
    assert "+1.25 ticks [+0.50, +2.00]." in text
    prim = dict(one, primary=[{"a": "A3", "b": "A5", "mean": 1.0, "low": 0.5, "high": 1.5,
                               "p_holm": 0.01, "n_seeds": 1, "n_episodes": 128}])
    text = findings.primary_text(prim)
    assert text.splitlines()[0] == findings.ILLUSTRATION and "p =" not in text


def test_scenarios_and_delay_rows():
    assert scenarios_in(RESULTS) == ["S1E"]
    rows = delay_rows(RESULTS, "A3", "S1E")
    assert [d for d, _ in rows] == [0, 4]
    assert delay_rows(RESULTS, "A3", "S1") == []


def test_scenario_grid_has_a_row_per_scenario():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = figures.plot_scenarios(RESULTS, ("A3", "A5"), [("success_cup", "success"),
                                                        ("ert", "ERT")])
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_title() == "S1E early jump, agent moving: success"
    line = axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0, 4])
    np.testing.assert_allclose(line.get_ydata(), [0.90, 0.80])
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_window_sweep_orders_band_arms_by_w():
    def arm(success, ert):
        return {"S1|d=4": _entry(4, success, ert)}

    results = {"conditions": {"A3": arm((0.9, 0.8, 1.0), (0.0, -0.1, 0.1)),
                              "A5": arm((0.8, 0.7, 0.9), (0.5, 0.4, 0.6)),
                              "A5w1": arm((0.6, 0.5, 0.7), (1.0, 0.9, 1.1)),
                              "A6": arm((0.7, 0.6, 0.8), (0.2, 0.1, 0.3)),
                              "A7": arm((0.7, 0.6, 0.8), (0.2, 0.1, 0.3))},
               "conflict": {"A5w1": {"C": [None] * 8 + [0.5, 0.25] + [None] * 6},
                            "A5": {"C": [0.1] * 16}}}
    # A6 (hard block) and A7 (band plus RoPE offset, hiding, reweighting) are not windows.
    assert window_arms(results) == [(1, "A5w1"), (4, "A5")]
    assert findings.findings_window(results) == (
        "Λ band window at S1|d=4 (cup): w = 1 (A5w1): success 60.0% [50.0, 70.0], ERT 1.00 "
        "[0.90, 1.10], C(k >= 8) 0.38; w = 4 (A5): success 80.0% [70.0, 90.0], ERT "
        "0.50 [0.40, 0.60], C(k >= 8) 0.10.")
    assert findings.findings_window(results, scenario="S1E") == "No Λ-band arms evaluated at S1E|d=4."
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    fig = figures.plot_window_sweep(results)
    np.testing.assert_allclose(fig.axes[2].get_lines()[0].get_ydata(), [0.375, 0.1])
    plt.close(fig)
