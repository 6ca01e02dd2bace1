"""DynReach v2's report: figures build from a real v2ci study, and the findings text follows the
statistics rules (one seed: no p-value, an illustration; several seeds: seed-level intervals,
sign-flip p-values never below 2^(1 - n), the right direction words, exploratory labels)."""

import json
import re

import numpy as np
import pytest

from xr0lab.dynreach import report_v2 as R
from xr0lab.dynreach.study import PRIMARY, conflict_curves, evaluate_contrast

P_VALUE = re.compile(r"p = ([0-9.eE+-]+)")


@pytest.fixture(scope="module")
def v2ci(tmp_path_factory):
    """The tiny v2ci study (about 30 s on one core), analysed once for the whole module."""
    from xr0lab.dynreach.study import pilot_record, run_study, study_preset

    run = tmp_path_factory.mktemp("v2ci_report")
    res = run_study(study_preset("v2ci"), run_dir=run, progress=False)
    # Through JSON, as the notebooks read the committed files (NaN -> null, tuples -> lists).
    res = json.loads((run / "results.json").read_text())
    return res, json.loads(json.dumps(pilot_record(res), default=float))


def _synthetic(success_a3, success_a5, ert_a3, ert_a5, *, copy_excess=0.3, seeds=None) -> dict:
    """A multi-seed results dict of the study's shape with hand-set per-seed values."""
    n = len(success_a3)
    seeds = list(range(10, 10 + n)) if seeds is None else seeds
    per_seed = {}
    for arm, succ, ert, cf in (("A3", success_a3, ert_a3, 0.2 + copy_excess),
                               ("A5", success_a5, ert_a5, 0.2)):
        per_seed[arm] = {str(s): {"S1M|d=3": {"success_cup": succ[i], "ert": ert[i],
                                              "oracle_success_cup": 1.0},
                                  "conflict": {"copy_fraction_late": cf, "C_late": cf,
                                               "oracle_copy_fraction_late": 0.2,
                                               "oracle_C_late": 0.2}}
                         for i, s in enumerate(seeds)}
    contrasts = [evaluate_contrast(per_seed, c, seeds) for c in PRIMARY]
    return {"meta": {"name": "synthetic", "seeds": seeds, "one_seed": n == 1,
                     "created": "today", "config": {"eval": {"n_episodes": 1024,
                                                             "conflict_episodes": 256}}},
            "per_seed": per_seed, "contrasts": contrasts, "stage_a": {}}


def _p_values(text: str) -> list[float]:
    return [float(m.rstrip(".;,)")) for m in P_VALUE.findall(text)]


def _printed_floor(n: int) -> float:
    """2^(1 - n): `stats.format_p` rounds up, so no printed p-value may be below it."""
    return 2.0 ** (1 - n)


A3_SUCCESS = [0.60, 0.62, 0.58, 0.61, 0.59]
A3_ERT = [4.0, 4.2, 3.8, 4.1, 3.9]


def test_conflict_curves_average_seeds_beside_the_oracle():
    def cell(cf, c, ocf, oc):
        return {"conflict": {"delay": 3, "window": 4,
                             "arm": {"k": np.arange(3, 6), "copy_fraction_k": np.array(cf),
                                     **({"C_k": np.array(c)} if c is not None else {})},
                             "oracle": {"k": np.arange(3, 6), "copy_fraction_k": np.array(ocf),
                                        "C_k": np.array(oc)}}}

    cells = {("A3", 0): cell([0.2, 0.4, 0.6], [0.5, np.nan, 0.9], [0.1, 0.0, 0.0],
                             [0.3, 0.2, 0.1]),
             ("A3", 1): cell([0.4, 0.6, 0.8], [0.7, 0.8, 0.9], [0.1, 0.0, 0.0],
                             [0.3, 0.2, 0.1]),
             ("A1", 0): cell([0.5, 0.5, 0.5], None, [0.1, 0.0, 0.0], [0.3, 0.2, 0.1])}
    out = conflict_curves(cells)
    a3 = out["A3"]
    assert a3["k"] == [3, 4, 5] and a3["n_seeds"] == 2 and (a3["delay"], a3["window"]) == (3, 4)
    assert a3["copy_fraction_k"] == pytest.approx([0.3, 0.5, 0.7])
    assert a3["C_k"] == pytest.approx([0.6, 0.8, 0.9])          # NaN-aware: seed 1 alone at k=4
    assert a3["oracle_C_k"] == pytest.approx([0.3, 0.2, 0.1])
    assert out["A1"]["C_k"] is None and out["A1"]["copy_fraction_k"] == [0.5, 0.5, 0.5]
    bad = dict(cells)
    bad[("A3", 1)] = {"conflict": {**cells[("A3", 1)]["conflict"],
                                   "arm": {"k": np.arange(2, 5), "copy_fraction_k": np.zeros(3)}}}
    with pytest.raises(ValueError, match="disagree on the executed indices"):
        conflict_curves(bad)


def test_figures_build_from_the_v2ci_study(v2ci):
    from matplotlib.figure import Figure

    res, _ = v2ci
    assert set(res["conflict_curves"]) == {"A1", "A3", "A5"}
    assert res["conflict_curves"]["A3"]["k"] == list(range(3, 20))
    assert res["conflict_curves"]["A1"]["C_k"] is None
    assert len(res["conflict_curves"]["A5"]["oracle_C_k"]) == 17
    figs = [R.plot_primary_pairs(res), R.plot_copy_curves_v2(res),
            R.plot_vs_delay_v2(res, ("A1", "A3", "A5")), R.plot_pareto_v2(res),
            R.plot_band_table(res["meta"]["band_table"]), R.plot_band_tables()]
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
    assert "illustration" in figs[0]._suptitle.get_text()
    # The copy-curve panel draws one line per arm with a C(k) plus the oracle's reference.
    labels = [line.get_label() for line in figs[1].axes[1].get_lines()]
    assert "oracle (same inputs)" in labels and sum(lab.startswith("A") for lab in labels) == 2


def test_one_seed_findings_are_an_illustration_without_p_values(v2ci):
    res, pilot = v2ci
    assert res["meta"]["one_seed"] is True
    for text in (R.findings_v2(res), R.pilot_findings(pilot), R.prefix_findings_v2(res),
                 R.conclusion_lambda(res, pilot), R.conclusion_prefix(res)):
        assert "p = " not in text and "p-value (" not in text
        assert "illustration" in text
    assert "no interval, no p-value" in R.findings_v2(res)


def test_multi_seed_findings_give_direction_interval_and_floored_p():
    res = _synthetic(A3_SUCCESS, [s + d for s, d in zip(A3_SUCCESS, [.05, .04, .06, .05, .05])],
                     A3_ERT, [e - d for e, d in zip(A3_ERT, [1.0, 0.8, 1.2, 1.1, 0.9])])
    text = R.findings_v2(res)
    assert "illustration" not in text
    assert "A5 - A3, cup success (S1M|d=3): +5.0 points" in text
    assert "A5's cup success is higher than A3's (better for A5); the seed-level 95% interval " \
           "excludes zero" in text
    assert "A5 - A3, ERT (S1M|d=3): -1.00 ticks" in text
    assert "A5's ERT is lower than A3's (A5 reacts sooner after the jump)" in text
    # Every seed agrees: the sign-flip test sits at its floor 2^(1-5) and says so.
    assert "sign-flip p = 0.0625 (the smallest this test can give)" in text
    # Holm doubles both; with 5 seeds nothing can reach alpha = 0.05.
    assert text.count("Holm-adjusted p = 0.125, not significant") == 2
    assert _p_values(text) and min(_p_values(text)) == _printed_floor(5)
    assert "did not measurably change cup success" in R.conclusion_lambda(res)
    fig = R.plot_primary_pairs(res)
    notes = [ax.get_xlabel() for ax in fig.axes]
    assert notes[0] == "A5 - A3 = +5.0 points\n95% CI [+4.1, +5.9]\nsign-flip p = 0.0625 " \
                       "(the smallest this test can give)"
    assert fig._suptitle.get_text().startswith("one line per training seed")
    assert len(fig.axes[0].get_lines()) >= 5                  # one line per seed


def test_ten_seeds_reach_significance_and_the_conclusion_says_which_way():
    rng = np.random.default_rng(0)
    a3 = list(0.6 + 0.02 * rng.standard_normal(10))
    ert3 = list(4 + 0.1 * rng.standard_normal(10))
    res = _synthetic(a3, [v - 0.05 for v in a3], ert3, [v + 1.0 for v in ert3])
    text = R.findings_v2(res)
    assert "A5's cup success is lower than A3's (worse for A5)" in text
    assert "A5's ERT is higher than A3's (A5 reacts later after the jump)" in text
    assert "Holm-adjusted p = 0.00391, significant" in text
    # The smallest p printed is the sign-flip floor 2^-9 = 0.001953..., rounded up.
    assert min(_p_values(text)) == 0.00196 >= _printed_floor(10)
    assert "worsened cup success (-5.0 points) and worsened ERT (+1.00 ticks)" in \
        R.conclusion_lambda(res)


def test_mixed_signs_leave_the_direction_open():
    res = _synthetic(A3_SUCCESS, [s + d for s, d in zip(A3_SUCCESS, [.05, -.04, .03, -.02, .01])],
                     A3_ERT, A3_ERT)
    text = R.findings_v2(res)
    assert "+0.6 points" in text
    assert "includes zero, so the sign is not established" in text
    assert "A5's ERT is the same as A3's" in text
    assert min(_p_values(text)) >= _printed_floor(5)


def test_contrasts_not_in_the_results_are_exploratory():
    res = _synthetic(A3_SUCCESS, A3_SUCCESS, A3_ERT, A3_ERT)
    declared = R.contrast(res, "A5", "A3", "S1M|d=3", "ert")
    assert declared["label"] == "pre-declared"
    extra = R.contrast(res, "A3", "A5", "S1M|d=3", "success_cup")   # reversed: not declared
    assert extra["label"] == "exploratory" and extra["n_seeds"] == 5
    assert R.contrast_text(extra, False).startswith("[exploratory] A3 - A5, cup success")
    assert R.contrast(res, "A7", "A3", "S1M|d=3", "ert") is None


def test_pilot_findings_follow_the_copy_rule():
    copies = _synthetic(A3_SUCCESS, A3_SUCCESS, A3_ERT, A3_ERT, copy_excess=0.3,
                        seeds=[900, 901, 902, 903, 904])
    text = R.pilot_findings(copies)
    assert "A3 copies (late copy fraction +0.300, late C(k) +0.300)" in text
    assert "A5 does not copy" in text
    assert "the confirmatory study may go ahead" in text
    assert min(_p_values(text), default=1.0) >= _printed_floor(5)
    flat = _synthetic(A3_SUCCESS, A3_SUCCESS, A3_ERT, A3_ERT, copy_excess=0.01)
    text = R.pilot_findings(flat)
    assert "A3 does not copy" in text and "cannot answer the question" in text
    assert "did not find A3 copying" in R.conclusion_lambda(None, {**flat, "verdict": {
        "a3_copies": False}})


def test_committed_pilot_reads_a6_meeting_the_rule_as_non_specific():
    import json

    from xr0lab.workspace.paths import repo_root

    pilot = json.loads((repo_root() / "data" / "dynreach_v2" / "pilot.json").read_text())
    text = R.pilot_findings(pilot)
    assert "But the hard block A6" in text
    assert pilot["verdict"]["arms"]["A6"]["copies"]
    lines = [ln for ln in text.splitlines() if "[exploratory, chosen after looking]" in ln]
    assert len(lines) == 4 and all("A3 - A6" in ln for ln in lines)
    assert min(_p_values(text), default=1.0) >= _printed_floor(3)


def test_v1_negative_control_numbers():
    from xr0lab.dynreach.arms import beyond_band

    assert beyond_band(4, 4, 8) == 0
    tables = R.band_tables()
    assert tables["v1"]["d=4"]["w=4"] == 0 and tables["v2"]["d=3"]["w=4"] == 13
    parked = R.parked_at_jump("S1M", seeds=np.arange(40))
    assert parked["n"] == 40 and parked["parked"] == 0      # S1M jumps only while moving
    text = R.v1_control_text(None, [parked])
    assert "0 of 40 test episodes (0.0%)" in text and "0 of the 4 executed indices" in text
    with pytest.raises(ValueError, match="threshold is a fraction of v_max"):
        R.parked_at_jump("S1", seeds=[0], threshold=2)


def test_missing_files_read_as_none(tmp_path, monkeypatch):
    monkeypatch.setenv("XR0LAB_DATA", str(tmp_path))
    assert R.load_v2("results.json") is None and R.protocol_headline() is None
    (tmp_path / "dynreach_v2").mkdir()
    (tmp_path / "dynreach_v2" / "protocol.md").write_text(
        "# Protocol v2\n\nPrimary: A5 vs A3.\n\nMore.\n")
    assert R.protocol_headline() == "# Protocol v2\n\nPrimary: A5 vs A3."
