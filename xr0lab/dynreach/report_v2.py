"""Figures and findings of DynReach version 2 for notebooks 05 and 06, read from a study's results.

A results dict is what `study.analyse` returns (and `data/dynreach_v2/results.json` holds): the
per-seed table, seed-level estimates, the pre-declared contrasts, the mechanism test's curves
(`conflict_curves`) and `meta` (seeds, `one_seed`, the band table). A pilot record
(`data/dynreach_v2/pilot.json`) is the same dict plus the pilot's `verdict`.

Rules every text here keeps (docs/dynreach.md §7):
- the replication unit is the training seed: intervals are seed-level t intervals, tests the
  exact sign-flip test, printed with `stats.format_p` so that no p-value falls below the floor
  2^(1 - n) the test can reach (the paired t statistic is reported as t, not as a p-value);
- one seed (quick mode, `meta["one_seed"]`) is an illustration, not a test: no interval and no
  p-value at all, and the text says so;
- a comparison not among the results' pre-declared contrasts is computed the same way but is
  labelled "exploratory" wherever it is shown.

Figures follow `xr0lab.plots.figure`: single-panel functions draw into `ax=` when given, every
function returns its figure closed in pyplot, and nothing here writes files. Version 1's results
(`data/dynreach_results.json`) appear only as the negative control (`v1_control_text`,
`parked_at_jump`, `band_tables`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from xr0lab.dynreach.arms import ARMS_V2, beyond_band
from xr0lab.dynreach.evaluate_v2 import PRIMARY_DELAY, V2_HORIZON, WINDOWS, band_table
from xr0lab.dynreach.stats import format_p, holm, seed_level_test
from xr0lab.plots.figure import figure_axes, new_figure

COLOURS = {"A0": "#7f7f7f", "A1": "#d62728", "A2": "#ff7f0e", "A3": "#1f77b4", "A4": "#9467bd",
           "A5": "#2ca02c", "A6": "#8c564b", "A7": "#e377c2", "A3replan": "#17becf",
           "oracle": "#000000", "O": "#000000"}
# Version 1's timeline (docs/dynreach.md §3): H = 16, s = 8, d in {0, 1, 2, 3, 4, 6, 8}.
V1_HORIZON, V1_DELAYS = 8, (0, 1, 2, 3, 4, 6, 8)
ALPHA = 0.05
ILLUSTRATION = ("This is an illustration, not a test: one training seed, so no interval and no "
                "p-value is printed.")
# How each metric is named and printed, and which direction is better (+1 higher, -1 lower,
# 0 neither: the copy metrics measure the mechanism, not performance).
METRICS = {"success_cup": ("cup success", "pct", 1), "success_plain": ("plain success", "pct", 1),
           "ert": ("ERT", "ticks", -1), "rt": ("reaction time", "ticks", -1),
           "spill_cup": ("cup spill", "num", -1), "jerk": ("jerk", "small", -1),
           "copy_fraction_late": ("late copy fraction", "num", 0),
           "C_late": ("late C(k)", "num", 0), "C_executed": ("C(k) on executed indices", "num", 0),
           "copy_fraction": ("copy fraction", "num", 0)}


def arm_label(arm: str) -> str:
    return f"{arm} {ARMS_V2[arm].label}" if arm in ARMS_V2 else arm


# ------------------------------------------------------------------------------- reading


def load_v2(name: str) -> dict | None:
    """A committed version-2 file, data/dynreach_v2/<name> (e.g. "pilot.json", "results.json";
    XR0LAB_DATA moves data/), or None when it is not committed yet."""
    from xr0lab.workspace.paths import data_dir

    path = data_dir() / "dynreach_v2" / name
    return json.loads(path.read_text()) if path.is_file() else None


def protocol_headline(path: Path | str | None = None) -> str | None:
    """The first heading and first paragraph of data/dynreach_v2/protocol.md, or None when the
    protocol is not committed yet."""
    from xr0lab.workspace.paths import data_dir

    path = Path(path) if path else data_dir() / "dynreach_v2" / "protocol.md"
    if not path.is_file():
        return None
    blocks = [b.strip() for b in path.read_text().split("\n\n") if b.strip()]
    head = [b for b in blocks if b.startswith("#")][:1]
    body = [b for b in blocks if not b.startswith("#")][:1]
    return "\n\n".join(head + body) or None


def _meta(results: dict) -> dict:
    return results.get("meta", {})


def _seeds(results: dict) -> list[int]:
    return [int(s) for s in _meta(results).get("seeds", [])]


def is_illustration(results: dict) -> bool:
    """True for one-seed results (quick mode): shown, never tested."""
    return bool(_meta(results).get("one_seed")) or len(_seeds(results)) < 2


def source_line_v2(results: dict, file: str | None = None) -> str:
    """Which results these are: committed file or this notebook's run, seeds, episodes."""
    m = _meta(results)
    ev = m.get("config", {}).get("eval", {})
    seeds = _seeds(results)
    what = f"committed {m.get('name')!r} study ({file})" if file else \
        f"the {m.get('name')!r} study run in this notebook"
    return (f"Source: {what}; {len(seeds)} training seed(s) {seeds}, "
            f"{ev.get('n_episodes', '?')} test episodes per condition, "
            f"{ev.get('conflict_episodes', '?')} conflict states, created {m.get('created', '?')}.")


def _per_seed(results: dict, arm: str, condition: str, metric: str,
              seeds: Sequence[int] | None = None) -> np.ndarray:
    """One value per seed (NaN where missing), in `seeds` order (default: the results')."""
    rows = results.get("per_seed", {}).get(arm, {})
    seeds = _seeds(results) if seeds is None else seeds
    out = []
    for s in seeds:
        v = rows.get(str(s), {}).get(condition, {}).get(metric)
        out.append(np.nan if v is None else float(v))
    return np.asarray(out, np.float64)


def _t_interval(v: np.ndarray) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of the finite values: the seed-level 95% t interval (None, None with
    fewer than two seeds)."""
    from scipy import stats as st

    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), None, None
    if v.size < 2:
        return float(v.mean()), None, None
    half = float(st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half


def estimate(results: dict, arm: str, condition: str, metric: str) -> dict | None:
    """{"mean", "low", "high", "n_seeds"} of one arm's per-seed values (low/high None with one
    seed), or None where the arm or condition is absent."""
    v = _per_seed(results, arm, condition, metric)
    if not np.isfinite(v).any():
        return None
    mean, low, high = _t_interval(v)
    return {"mean": mean, "low": low, "high": high, "n_seeds": int(np.isfinite(v).sum())}


def arms_in(results: dict, arms: Sequence[str] | None = None) -> list[str]:
    have = list(results.get("per_seed", {}))
    return have if arms is None else [a for a in arms if a in have]


def conditions_in(results: dict, scenario: str) -> list[tuple[int, str]]:
    """(d, "<scenario>|d=<d>") of the constant-delay conditions present, sorted by d."""
    found = {k for rows in results.get("per_seed", {}).values() for r in rows.values()
             for k in r if k.startswith(f"{scenario}|d=")}
    return sorted((int(k.split("=", 1)[1]), k) for k in found)


def contrast(results: dict, a: str, b: str, condition: str, metric: str) -> dict | None:
    """The seed-level comparison a - b: the pre-declared one from results["contrasts"] when it
    is there (label "pre-declared"), else computed the same way from the per-seed table and
    labelled "exploratory". None when either side has no finite seed."""
    for c in results.get("contrasts", []):
        if (c.get("a"), c.get("b"), c.get("condition"), c.get("metric")) == \
                (a, b, condition, metric):
            return {**c, "label": "pre-declared"} if c.get("seeds") else None
    va = _per_seed(results, a, condition, metric)
    vb = _per_seed(results, a, condition, f"oracle_{metric}") if b == "oracle" else \
        _per_seed(results, b, condition, metric)
    ok = np.isfinite(va) & np.isfinite(vb)
    if not ok.any():
        return None
    t = seed_level_test(va[ok], vb[ok])
    return {"name": f"exploratory: {a} - {b}, {metric} at {condition}", "a": a, "b": b,
            "condition": condition, "metric": metric,
            "seeds": [s for s, k in zip(_seeds(results), ok) if k], "n_seeds": t.n_seeds,
            "mean": t.mean, "low": t.low, "high": t.high, "t": t.t, "p_t": t.p_t,
            "p_sign_flip": t.p_sign_flip, "p_floor": t.p_floor, "differences": list(t.differences),
            "mean_a": float(va[ok].mean()), "mean_b": float(vb[ok].mean()),
            "label": "exploratory"}


# ------------------------------------------------------------------------------ formatting


def _num(x: float | None, metric: str, signed: bool = False, unit: bool = True) -> str:
    """A value as printed: success in % (differences in points), ERT in ticks; `unit=False`
    drops the unit (interval bounds)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    kind = METRICS.get(metric, (metric, "num", 0))[1]
    sign = "+" if signed else ""
    if kind == "pct":
        return f"{100 * x:{sign}.1f}" + ((" points" if signed else "%") if unit else "")
    if kind == "ticks":
        return f"{x:{sign}.2f}" + (" ticks" if unit else "")
    if kind == "small":
        return f"{x:{sign}.5f}"
    return f"{x:{sign}.3f}"


def _est_text(e: dict | None, metric: str) -> str:
    if e is None:
        return "n/a"
    text = _num(e["mean"], metric)
    if e.get("low") is not None:
        text += f" [{_num(e['low'], metric, unit=False)}, {_num(e['high'], metric, unit=False)}]"
    return text


def _p_text(c: dict) -> str:
    """The tests of a contrast as printed: the sign-flip p-value with its floor (never below
    it) and the paired t statistic; nothing with one seed."""
    if c.get("n_seeds", 0) < 2 or c.get("p_sign_flip") is None:
        return ""
    parts = []
    if c.get("t") is not None:
        parts.append(f"paired t = {c['t']:.2f} on {c['n_seeds'] - 1} df")
    parts.append(f"sign-flip {format_p(c['p_sign_flip'], c['p_floor'])}")
    return "; ".join(parts)


def direction_text(c: dict, illustration: bool) -> str:
    """A sentence on the sign of a contrast: "higher"/"lower" than b, whether the seed-level
    interval excludes zero, and what that means for the metric (e.g. reacts sooner)."""
    a, b, metric = c["a"], c["b"], c["metric"]
    name, _, better = METRICS.get(metric, (metric, "num", 0))
    other = "the oracle's" if b == "oracle" else f"{b}'s"
    mean = c["mean"]
    if mean == 0:
        word = "the same as"
    else:
        word = "higher than" if mean > 0 else "lower than"
    text = f"{a}'s {name} is {word} {other}"
    if metric == "ert" and mean != 0:
        text += f" ({a} reacts {'later' if mean > 0 else 'sooner'} after the jump)"
    elif better and mean != 0:
        text += f" ({'better' if mean * better > 0 else 'worse'} for {a})"
    elif metric in ("copy_fraction_late", "C_late") and mean != 0:
        text += f" ({a} {'follows the prefix more' if mean > 0 else 'follows the image more'})"
    if illustration or c.get("low") is None:
        return text + " in this one run."
    if c["low"] > 0 or c["high"] < 0:
        return text + "; the seed-level 95% interval excludes zero."
    return text + "; the seed-level 95% interval includes zero, so the sign is not established."


def contrast_text(c: dict, illustration: bool) -> str:
    """One line: label, the difference with its interval and tests, and its direction."""
    metric = c["metric"]
    name = METRICS.get(metric, (metric,))[0]
    head = f"[{c.get('label', 'pre-declared')}] {c['a']} - {c['b']}, {name} ({c['condition']}): "
    head += _num(c["mean"], metric, signed=True)
    if illustration or c.get("n_seeds", 0) < 2:
        head += f" (one seed: {c['a']} {_num(c.get('mean_a'), metric)} vs " \
                f"{c['b']} {_num(c.get('mean_b'), metric)}; no interval, no p-value)"
    else:
        head += (f" (95% seed-level t CI [{_num(c['low'], metric, True, False)}, "
                 f"{_num(c['high'], metric, True, False)}]; {_p_text(c)}; {c['n_seeds']} seeds)")
    return head + ". " + direction_text(c, illustration)


def _holm_text(cs: Sequence[dict], family: str, alpha: float = ALPHA) -> str:
    """Holm over a family's sign-flip p-values; the adjusted values never fall below the floor
    because Holm only scales p-values up."""
    tested = [c for c in cs if c.get("p_sign_flip") is not None]
    if not tested:
        return ""
    adj = holm([c["p_sign_flip"] for c in tested])
    parts = []
    for c, p in zip(tested, adj):
        verdict = "significant" if p <= alpha else "not significant"
        parts.append(f"{c['a']} - {c['b']} {METRICS.get(c['metric'], (c['metric'],))[0]}: "
                     f"Holm-adjusted {format_p(float(p), c['p_floor'])}, {verdict}")
    return (f"Holm over the {family} (sign-flip p-values, alpha = {alpha}): "
            + "; ".join(parts) + ".")


# ------------------------------------------------------------------------------ findings


def primary_contrasts(results: dict) -> list[dict]:
    """The primary endpoint's contrasts (A5 vs A3 in S1M cup at d = 3) present in results."""
    from xr0lab.dynreach.study import PRIMARY

    out = []
    for p in PRIMARY:
        c = contrast(results, p.a, p.b, p.condition, p.metric)
        if c is not None:
            out.append(c)
    return out


def _secondary(results: dict) -> list[dict]:
    prim = {(c["a"], c["b"], c["condition"], c["metric"]) for c in primary_contrasts(results)}
    return [{**c, "label": "pre-declared"} for c in results.get("contrasts", [])
            if c.get("seeds") and (c["a"], c["b"], c["condition"], c["metric"]) not in prim]


def gate_text(results: dict) -> str:
    """Whether stage A reached its quality gate in each seed (docs/dynreach.md §7)."""
    gate = _meta(results).get("config", {}).get("gate") or {}
    target = gate.get("target")
    rows = results.get("stage_a", {})
    if not rows or target is None:
        return "Stage-A gate: not recorded in these results."
    passed, best, steps = [], [], []
    for seed, r in sorted(rows.items()):
        checks = (r or {}).get("gate") or []
        means = [c.get("mean", 0.0) for c in checks]
        best.append(max(means) if means else float("nan"))
        passed.append(bool(means) and max(means) >= target)
        steps.append((r or {}).get("steps"))
    cap = _meta(results).get("config", {}).get("train", {}).get("stage_a_steps")
    text = (f"Stage-A gate (validation plain success >= {100 * target:.0f}% at d = 0): reached "
            f"in {sum(passed)} of {len(passed)} seed(s)")
    if not all(passed):
        text += (f"; the seed(s) that did not reach it trained to the stated maximum of {cap} "
                 f"steps, best validation "
                 f"success {', '.join(f'{100 * b:.1f}%' for b, p in zip(best, passed) if not p)}"
                 " (an undertrained policy: read its numbers as a pipeline check)")
    return text + "."


def copy_text(results: dict, arms: Sequence[str] = ("A3", "A5", "A6", "A7")) -> str:
    """Which arms copy, by the pilot's rule (`study.pilot_verdict`), with the excess over the
    oracle of each copy metric."""
    from xr0lab.dynreach.study import COPY_MARGIN, pilot_verdict

    verdict = results.get("verdict") or pilot_verdict(results, arms)
    if not verdict["arms"]:
        return "Copying: none of the prefix arms " + "/".join(arms) + " is in these results."
    parts = []
    for arm, row in verdict["arms"].items():
        ex = ", ".join(f"{METRICS[m][0]} {row[m]['mean_excess']:+.3f}"
                       for m in ("copy_fraction_late", "C_late") if m in row)
        parts.append(f"{arm} {'copies' if row['copies'] else 'does not copy'} ({ex})")
    text = (f"Which arms copy (rule: {verdict['rule']}, margin {COPY_MARGIN}; excess over the "
            f"oracle on the same inputs, mean over seeds): " + "; ".join(parts) + ".")
    if is_illustration(results):
        text += " With one seed the rule's 'every seed' is a single seed."
    return text


def s1_control_text(results: dict, delay: int = PRIMARY_DELAY) -> str | None:
    """S1 (the target jumps after the agent has parked), the negative control: every arm
    should tie there. Exploratory: no contrast of S1 is pre-declared."""
    cond = f"S1|d={delay}"
    rows = [(a, estimate(results, a, cond, "success_cup"), estimate(results, a, cond, "ert"))
            for a in arms_in(results)]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    ert = [r[2]["mean"] for r in rows if r[2] is not None]
    parts = [f"{a} success {_est_text(s, 'success_cup')}, ERT {_est_text(e, 'ert')}"
             for a, s, e in rows]
    text = (f"[exploratory] Negative control S1 (agent parked at the jump), d = {delay}: "
            + "; ".join(parts) + ".")
    if ert:
        text += (f" Mean ERT spans {min(ert):+.2f} to {max(ert):+.2f} ticks across arms "
                 "(every arm should tie here; a clear gap would point to a bug).")
    return text


def probe_text(results: dict) -> str | None:
    r2 = [r["probe"]["r2"] for r in results.get("stage_a", {}).values()
          if r and r.get("probe") and r["probe"].get("r2") is not None]
    if not r2:
        return None
    readable = ("the goal is linearly readable, so copying would be a shortcut, not blindness"
                if min(r2) >= 0.8 else "the goal is only partly readable (undertrained "
                "encoder), so copying cannot be told apart from blindness here")
    return (f"Linear probe of the visible goal from the context tokens: held-out R² "
            f"{np.mean(r2):.3f} (min {min(r2):.3f} over {len(r2)} seed(s)); {readable}.")


def findings_v2(results: dict, file: str | None = None) -> str:
    """Notebook 05's findings, every number computed from `results`: copying (the pilot's rule),
    the primary endpoint with seed-level intervals and sign-flip p-values (with their floor),
    Holm over the two, the pre-declared secondary contrasts, and the exploratory S1 control.
    One-seed results print no interval and no p-value and say they are an illustration.
    `file`: the committed file the results came from (None: this notebook's run)."""
    ill = is_illustration(results)
    out = [source_line_v2(results, file)]
    if ill:
        out.append(ILLUSTRATION)
    out.append(gate_text(results))
    out.append(copy_text(results))
    prim = primary_contrasts(results)
    if not prim:
        out.append("Primary endpoint (S1M cup, d = 3, A5 vs A3): A3 and A5 are not both in these "
                   "results.")
    else:
        out.append("Primary endpoint (S1M cup mode, d = 3, A5 Λ band w = 4 vs A3 full mask):")
        out += ["  " + contrast_text(c, ill) for c in prim]
        if not ill:
            floor = prim[0].get("p_floor")
            out.append(f"  {_holm_text(prim, 'two primary endpoints')} With "
                       f"{prim[0]['n_seeds']} seeds the sign-flip test cannot go below "
                       f"p = 2^(1 - n) = {floor:.6f}.")
    sec = _secondary(results)
    if sec:
        out.append("Secondary contrasts (pre-declared):")
        out += ["  " + contrast_text(c, ill) for c in sec]
        if not ill:
            h = _holm_text(sec, "secondary family")
            if h:
                out.append("  " + h)
    for extra in (s1_control_text(results), probe_text(results)):
        if extra:
            out.append(extra)
    return "\n".join(out)


def pilot_findings(pilot: dict) -> str:
    """The positive-control pilot in words: which arms copy by the pilot's rule, whether the
    benchmark can answer the question (A3 must copy), the seeds the primary contrasts need, and
    the pilot's primary estimates (not a test of the primary endpoint)."""
    from xr0lab.dynreach.study import pilot_verdict

    ill = is_illustration(pilot)
    verdict = pilot.get("verdict") or pilot_verdict(pilot)
    m = _meta(pilot)
    out = [f"Pilot {m.get('name')!r}: {len(_seeds(pilot))} training seed(s) "
           f"{_seeds(pilot)}, S1M cup mode at d = {PRIMARY_DELAY}, "
           f"{m.get('config', {}).get('eval', {}).get('n_episodes', '?')} test episodes and "
           f"{m.get('config', {}).get('eval', {}).get('conflict_episodes', '?')} conflict states "
           "(pilot seeds only; the confirmatory study never reuses them)."]
    if ill:
        out.append(ILLUSTRATION)
    out.append(gate_text(pilot))
    out.append(copy_text(pilot))
    if verdict.get("a3_copies"):
        out.append("The full-mask arm A3 copies, so the benchmark can ask whether the Λ mask "
                   "stops it: the confirmatory study may go ahead.")
        arms = verdict.get("arms", {})
        if arms.get("A6", {}).get("copies"):
            # A6 cannot see the prefix from the late indices: meeting the rule there means the
            # rule measures how slowly a learned policy bends, not prefix use.
            out.append("But the hard block A6, which cannot see the prefix from the late "
                       "indices at all, meets the rule too: an excess over the oracle's late "
                       "copy fraction measures how slowly a learned policy bends, not prefix "
                       "use. The protocol's mechanism contrasts therefore compare late C(k) "
                       "with A6.")
    else:
        out.append("The full-mask arm A3 does not copy by the pilot's rule, so this benchmark "
                   "cannot answer the question as set up: change labels, timing or training "
                   "budget and pilot again before any confirmatory run.")
    for name, pw in verdict.get("power", {}).items():
        if pw.get("effect_dz") is None:
            out.append(f"Power for {name!r}: no estimate (fewer than two seeds or no spread); "
                       f"planned at the floor of {pw['n_planned']} seeds.")
        else:
            out.append(f"Power for {name!r}: pilot effect dz = {pw['effect_dz']:.2f}, "
                       f"{pw['n_needed']} seeds for 80% power, planned {pw['n_planned']}.")
    out.append(f"Seeds planned for the confirmatory study: {verdict.get('seeds_planned')}.")
    prim = primary_contrasts(pilot)
    if prim:
        out.append("The pilot's primary estimates (a pilot, not the confirmatory test):")
        out += ["  " + contrast_text(c, ill) for c in prim]
    explo = [dict(c, label="exploratory, chosen after looking") for c in
             pilot.get("exploratory", []) if c.get("n_seeds")]
    if explo:
        out.append("Contrasts chosen after the first pilot seed was seen (exploratory):")
        out += ["  " + contrast_text(c, ill) for c in explo]
    return "\n".join(out)


def conclusion_lambda(results: dict | None, pilot: dict | None = None) -> str:
    """Notebook 05's conclusion in plain words, decided by the numbers: does the pilot show
    copying, and what did the primary endpoint find (Holm over the two, sign-flip p)."""
    out = []
    if pilot is not None:
        v = pilot.get("verdict") or {}
        out.append("The pilot found that the full-mask arm A3 copies the prefix, so the question "
                   "can be asked." if v.get("a3_copies") else
                   "The pilot did not find A3 copying the prefix, so the benchmark cannot yet "
                   "tell whether the Λ mask stops copying.")
    if results is None:
        out.append("The confirmatory study has not run, so there is no answer to the primary "
                   "question yet.")
        return " ".join(out)
    prim = primary_contrasts(results)
    if len(prim) < 2:
        out.append("These results do not hold both A3 and A5, so the primary question is open.")
        return " ".join(out)
    if is_illustration(results):
        s, e = prim
        out.append(f"In this one-seed illustration the Λ band (A5) changed cup success by "
                   f"{_num(s['mean'], 'success_cup', True)} and ERT by "
                   f"{_num(e['mean'], 'ert', True)} relative to the full mask (A3); one seed "
                   "cannot say whether that is more than noise, so nothing is concluded.")
        return " ".join(out)
    adj = holm([c["p_sign_flip"] if c.get("p_sign_flip") is not None else 1.0 for c in prim])
    words = []
    for c, p in zip(prim, adj):
        name, _, better = METRICS[c["metric"]]
        if p <= ALPHA:
            good = c["mean"] * better > 0
            words.append(f"{'improved' if good else 'worsened'} {name} "
                         f"({_num(c['mean'], c['metric'], True)})")
        else:
            words.append(f"did not measurably change {name} "
                         f"({_num(c['mean'], c['metric'], True)}, Holm-adjusted sign-flip "
                         f"{format_p(float(p), c['p_floor'])})")
    out.append(f"Over {prim[0]['n_seeds']} training seeds, the Λ band (A5) "
               + " and ".join(words) + " relative to the full mask (A3) in S1M cup mode at "
               "d = 3.")
    return " ".join(out)


# ----------------------------------------------------------------- notebook 06 (prefixing)

PREFIX_ARMS = ("A0", "A1", "A2", "A3", "A7")


def prefix_findings_v2(results: dict, delay: int = PRIMARY_DELAY, scenario: str = "S1M",
                       file: str | None = None) -> str:
    """Notebook 06's findings: sync / naive / guidance vs the trained prefix (A3, A7) on
    success, spill, jerk and ERT at one delay, the paired differences against A3, and the label
    control A3replan vs A3. Contrasts not pre-declared in results are labelled exploratory."""
    ill = is_illustration(results)
    cond = f"{scenario}|d={delay}"
    out = [source_line_v2(results, file)]
    if ill:
        out.append(ILLUSTRATION)
    arms = arms_in(results, PREFIX_ARMS)
    for a in arms:
        if estimate(results, a, cond, "success_cup") is None:
            continue
        out.append(f"{arm_label(a)} at {cond}: success cup "
                   f"{_est_text(estimate(results, a, cond, 'success_cup'), 'success_cup')}, plain "
                   f"{_est_text(estimate(results, a, cond, 'success_plain'), 'success_plain')}; "
                   f"spill {_est_text(estimate(results, a, cond, 'spill_cup'), 'spill_cup')}; "
                   f"jerk {_est_text(estimate(results, a, cond, 'jerk'), 'jerk')}; "
                   f"ERT {_est_text(estimate(results, a, cond, 'ert'), 'ert')}.")
    pairs = [(a, "A3", m) for a in ("A0", "A1", "A2", "A7") if a in arms
             for m in ("success_cup", "spill_cup")]
    cs = [c for c in (contrast(results, a, b, cond, m) for a, b, m in pairs) if c is not None]
    if "A3" in arms and cs:
        out.append("Paired against the trained prefix A3:")
        out += ["  " + contrast_text(c, ill) for c in cs]
    elif "A3" not in arms:
        out.append("A3 (the trained prefix) is not in these results: no paired comparison.")
    label = label_control_text(results)
    if label:
        out.append(label)
    return "\n".join(out)


def label_control_text(results: dict) -> str | None:
    """A3replan (version 1's re-plan labels) vs A3 (executed labels): do the executed labels
    make copying pay? None when either arm is absent."""
    if not {"A3", "A3replan"} <= set(arms_in(results)):
        return None
    ill = is_illustration(results)
    cs = [contrast(results, "A3", "A3replan", "conflict", m)
          for m in ("copy_fraction_late", "C_late")]
    cs.append(contrast(results, "A3", "A3replan", f"S1M|d={PRIMARY_DELAY}", "success_cup"))
    cs = [c for c in cs if c is not None]
    return "\n".join(["Label control (A3 executed labels vs A3replan re-plan labels):"]
                     + ["  " + contrast_text(c, ill) for c in cs])


def conclusion_prefix(results: dict | None) -> str:
    """Notebook 06's conclusion in plain words: did the trained prefix beat naive switching on
    cup success and spill (sign-flip p with Holm over those two)?"""
    if results is None:
        return "The confirmatory study has not run, so version 2 has no answer here yet."
    cond = f"S1M|d={PRIMARY_DELAY}"
    cs = [c for c in (contrast(results, "A3", "A1", cond, m) for m in ("success_cup", "spill_cup"))
          if c is not None]
    if len(cs) < 2:
        return "These results do not hold both A1 and A3, so the naive-vs-prefix question is open."
    if is_illustration(results):
        return (f"In this one-seed illustration the trained prefix (A3) changed cup success by "
                f"{_num(cs[0]['mean'], 'success_cup', True)} and spill by "
                f"{_num(cs[1]['mean'], 'spill_cup', True)} relative to naive switching (A1); one "
                "seed cannot say whether that is more than noise, so nothing is concluded.")
    adj = holm([c["p_sign_flip"] if c.get("p_sign_flip") is not None else 1.0 for c in cs])
    words = []
    for c, p in zip(cs, adj):
        name, _, better = METRICS[c["metric"]]
        verdict = ("improved" if c["mean"] * better > 0 else "worsened") if p <= ALPHA else \
            "did not measurably change"
        words.append(f"{verdict} {name} ({_num(c['mean'], c['metric'], True)}, Holm-adjusted "
                     f"sign-flip {format_p(float(p), c['p_floor'])})")
    label = "pre-declared" if all(c["label"] == "pre-declared" for c in cs) else "exploratory"
    return (f"[{label}] Over {cs[0]['n_seeds']} training seeds the trained prefix (A3) "
            + " and ".join(words) + f" relative to naive switching (A1) in S1M at d = "
            f"{PRIMARY_DELAY}.")


# ---------------------------------------------------------------- version 1 (negative control)


def parked_at_jump(scenario: str = "S1", seeds=None, threshold: float = 0.8) -> dict:
    """How often the clean expert is parked when the target jumps: |a_{t_p - 1}| (the command
    that carried the agent into the jump tick) below threshold x v_max. Version 1's S1 test
    episodes by default (`data.TEST_SEEDS`). Returns {"scenario", "n", "parked", "fraction"}."""
    from xr0lab.dynreach.data import TEST_SEEDS
    from xr0lab.dynreach.expert import rollout_expert
    from xr0lab.dynreach.physics import V_MAX
    from xr0lab.dynreach.world import WorldConfig

    if not 0 < threshold <= 1:
        raise ValueError(f"parked_at_jump: threshold is a fraction of v_max in (0, 1], got "
                         f"{threshold}")
    seeds = TEST_SEEDS if seeds is None else np.asarray(seeds)
    r = rollout_expert(WorldConfig(scenario), seeds, noise=False)
    ep = r.episodes
    speed = np.linalg.norm(r.actions[np.arange(ep.n), np.maximum(ep.t_perturb - 1, 0)], axis=-1)
    parked = int((speed < threshold * V_MAX).sum())
    return {"scenario": scenario, "n": int(ep.n), "parked": parked, "fraction": parked / ep.n,
            "threshold": threshold}


def band_tables() -> dict:
    """{"v1": ..., "v2": ...}: executed indices beyond the band edge p + w (p = d) per (d, w) on
    version 1's timeline (s = 8) and version 2's (s = 20)."""
    return {"v1": band_table(V1_DELAYS, WINDOWS, V1_HORIZON),
            "v2": band_table(execution_horizon=V2_HORIZON)}


def _v1_seeds(v1: dict, arm: str) -> list[int]:
    return sorted(int(c.rsplit("seed", 1)[1]) for c in v1["meta"]["cells"]
                  if c.rsplit("_seed", 1)[0] == arm)


def v1_contrast(v1: dict, a: str, b: str, condition: str, metric: str) -> dict | None:
    """Version 1's per-seed values re-read at the seed level (a - b on the seeds both arms have,
    sign-flip test with its floor), labelled "v1 control"."""
    ea = v1["conditions"].get(a, {}).get(condition, {}).get(metric)
    eb = v1["conditions"].get(b, {}).get(condition, {}).get(metric)
    if not ea or not eb or "per_seed" not in ea or "per_seed" not in eb:
        return None
    sa = dict(zip(_v1_seeds(v1, a), ea["per_seed"]))
    sb = dict(zip(_v1_seeds(v1, b), eb["per_seed"]))
    both = sorted(set(sa) & set(sb))
    if not both:
        return None
    va, vb = np.array([sa[s] for s in both]), np.array([sb[s] for s in both])
    t = seed_level_test(va, vb)
    return {"name": f"v1: {a} - {b}, {metric} at {condition}", "a": a, "b": b,
            "condition": condition, "metric": metric, "seeds": both, "n_seeds": t.n_seeds,
            "mean": t.mean, "low": t.low, "high": t.high, "t": t.t, "p_t": t.p_t,
            "p_sign_flip": t.p_sign_flip, "p_floor": t.p_floor, "mean_a": float(va.mean()),
            "mean_b": float(vb.mean()), "label": "v1 control"}


def v1_control_text(v1: dict | None, parked: Sequence[dict] = (), delay: int = 4) -> str:
    """Why version 1 could not answer the question, with numbers: its endpoint did not move
    (every arm's ERT near 0), the agent was parked at the jump (`parked_at_jump` results), the
    band covered every executed action, and its bootstrap intervals were too narrow. Version 1
    is the negative control here, not a finding."""
    out = []
    for p in parked:
        out.append(f"{p['scenario']}: the clean expert is parked (|a| < {p['threshold']} v_max) "
                   f"when the target jumps in {p['parked']} of {p['n']} test episodes "
                   f"({100 * p['fraction']:.1f}%).")
    v1b = beyond_band(4, 4, V1_HORIZON)
    v2b = beyond_band(PRIMARY_DELAY, 4, V2_HORIZON)
    out.append(f"Band: on v1's timeline (H = 16, s = 8, d = p = 4, w = 4) {v1b} of the "
               f"{V1_HORIZON - 4} executed indices lie beyond the band edge p + w = 8, so the mask "
               f"could not matter where it was measured; on v2's (H = 30, s = 20, d = p = 3, "
               f"w = 4) {v2b} of the {V2_HORIZON - PRIMARY_DELAY} do.")
    if v1 is None:
        out.append("Version 1's results (data/dynreach_results.json) are not present.")
        return "\n".join(out)
    cond = f"S1|d={delay}"
    rows = [(a, e[cond]) for a, e in v1["conditions"].items() if cond in e]
    erts = {a: e["ert"]["mean"] for a, e in rows}
    lo, hi = min(erts, key=erts.get), max(erts, key=erts.get)
    n_seeds = len({c.rsplit("seed", 1)[1] for c in v1["meta"]["cells"]})
    out.append(f"v1 ({v1['meta']['name']!r}, {n_seeds} seeds, "
               f"{v1['meta']['config']['eval']['n_episodes']} episodes per condition), primary "
               f"condition {cond} cup: mean ERT of all {len(erts)} arms lies between "
               f"{erts[lo]:+.3f} ({lo}) and {erts[hi]:+.3f} ({hi}) ticks; the endpoint could "
               "not move.")
    for a, b in (("A5", "A3"), ("A6", "A3")):
        c = v1_contrast(v1, a, b, cond, "ert")
        if c is not None:
            out.append("  " + contrast_text(c, False))
    sec = [r for r in v1.get("secondary", []) + v1.get("primary", [])
           if r.get("p_value") is not None and r.get("n_seeds")]
    below = sum(r["p_value"] < 2.0 ** (1 - r["n_seeds"]) for r in sec)
    if sec:
        out.append(f"v1's hierarchical percentile bootstrap gave {below} of its {len(sec)} "
                   f"tested contrasts a p-value below 2^(1 - n), the smallest a seed-level "
                   f"sign-flip test on their n seeds can give ({2.0 ** (1 - n_seeds):g} with "
                   f"{n_seeds} seeds): its intervals were far too narrow for the number of "
                   "training seeds (v2 tests at the seed level).")
    return "\n".join(out)


def v1_prefix_text(v1: dict | None, delay: int = 4, scenario: str = "S1",
                   arms: Sequence[str] = ("A0", "A1", "A2", "A3")) -> str:
    """Version 1's sync / naive / guidance / prefix comparison as the negative control: each
    arm's mean success and spill, and A0 / A1 / A2 - A3 cup success re-read at the seed level.
    In S1 the switch mostly happens with the agent parked, so smoothness is nearly free."""
    if v1 is None:
        return "Version 1's results (data/dynreach_results.json) are not present."
    cond = f"{scenario}|d={delay}"
    parts = []
    for a in arms:
        e = v1["conditions"].get(a, {}).get(cond)
        if e is not None:
            parts.append(f"{a} success cup {100 * e['success_cup']['mean']:.1f}% / plain "
                         f"{100 * e['success_plain']['mean']:.1f}%, spill "
                         f"{e['spill_cup']['mean']:.3f}")
    out = [f"[v1 control] v1 {cond}: " + "; ".join(parts) + "."]
    for a in arms:
        if a == "A3":
            continue
        c = v1_contrast(v1, a, "A3", cond, "success_cup")
        if c is not None:
            out.append("  " + contrast_text(c, False))
    return "\n".join(out)


def v1_scenario_text(v1: dict, scenario: str, delay: int = 4,
                     arms: Sequence[str] = ("A1", "A3", "A5", "A6", "A7")) -> str:
    """Version 1's results in one scenario (e.g. S1E) at one delay, labelled exploratory: each
    arm's cup success and ERT with v1's intervals, and A5 / A6 - A3 ERT at the seed level."""
    cond = f"{scenario}|d={delay}"
    parts = []
    for a in arms:
        e = v1["conditions"].get(a, {}).get(cond)
        if e is None:
            continue
        parts.append(f"{a} success {100 * e['success_cup']['mean']:.1f}%, ERT "
                     f"{e['ert']['mean']:+.2f} ticks")
    out = [f"[exploratory, chosen after v1's primary result was seen] v1 {cond} cup: "
           + "; ".join(parts) + "."]
    for a in ("A5", "A6"):
        c = v1_contrast(v1, a, "A3", cond, "ert")
        if c is not None:
            c["label"] = "exploratory, v1"
            out.append("  " + contrast_text(c, False))
    return "\n".join(out)


# --------------------------------------------------------------------------------- figures


def _colour(arm: str) -> str | None:
    return COLOURS.get(arm)


def _no_data(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=ax.transAxes)


def plot_primary_pairs(results: dict, pairs: Sequence[tuple[str, str, str, str]] | None = None):
    """One panel per contrast (default: the primary endpoint, cup success and ERT of A5 vs A3 in
    S1M at d = 3): one grey line per training seed joining its two arms, and each arm's mean
    with its seed-level 95% t interval. With one seed: the line alone, titled an illustration."""
    from xr0lab.dynreach.study import PRIMARY

    pairs = pairs or [(p.a, p.b, p.condition, p.metric) for p in PRIMARY]
    ill = is_illustration(results)
    fig, axes = new_figure(1, len(pairs), size=(3.8 * len(pairs), 3.4))
    for ax, (a, b, cond, metric) in zip(axes[0], pairs):
        va, vb = _per_seed(results, a, cond, metric), _per_seed(results, b, cond, metric)
        ok = np.isfinite(va) & np.isfinite(vb)
        name = METRICS.get(metric, (metric,))[0]
        if not ok.any():
            _no_data(ax, f"{a} and {b} not both\nin these results ({cond})")
            continue
        scale = 100.0 if METRICS.get(metric, ("", ""))[1] == "pct" else 1.0
        for s, x, y in zip(np.asarray(_seeds(results))[ok], vb[ok], va[ok]):
            ax.plot([0, 1], [scale * x, scale * y], color="0.6", lw=0.9, marker="o", ms=3)
        for x, arm, v in ((0, b, vb[ok]), (1, a, va[ok])):
            mean, low, high = _t_interval(v)
            yerr = None if low is None else [[scale * (mean - low)], [scale * (high - mean)]]
            ax.errorbar(x + (0.08 if x else -0.08), scale * mean, yerr=yerr, fmt="s",
                        color=_colour(arm), ms=6, capsize=4, zorder=3)
        c = contrast(results, a, b, cond, metric)
        note = f"{a} - {b} = {_num(c['mean'], metric, True)}"
        if not ill and c.get("low") is not None:
            note += (f"\n95% CI [{_num(c['low'], metric, True, False)}, "
                     f"{_num(c['high'], metric, True, False)}]"
                     f"\nsign-flip {format_p(c['p_sign_flip'], c['p_floor'])}")
        ax.set_xlabel(note, fontsize=7)    # below the tick labels: never over the seed lines
        ax.set_xticks([0, 1], [arm_label(b), arm_label(a)], fontsize=7)
        ax.set_xlim(-0.5, 1.5)
        ax.set_ylabel(name + (" (%)" if scale == 100 else
                              " (ticks)" if METRICS.get(metric, ("", ""))[1] == "ticks" else ""))
        ax.set_title(f"{name}, {cond}" + (f" [{c['label']}]" if c['label'] != 'pre-declared'
                                          else ""), fontsize=9)
    fig.suptitle("one line per training seed; squares: mean with seed-level 95% t interval"
                 if not ill else "illustration (one seed): no interval, no test", fontsize=9)
    fig.tight_layout()
    return fig


def plot_copy_curves_v2(results: dict, arms: Sequence[str] | None = None):
    """The mechanism test per executed chunk index k = d .. s - 1: copy fraction (share of
    chunks pointing closer to the stale goal than to the new one) and C(k) (prefix influence
    share), per arm, with the oracle's curve on the same inputs as the reference (dashed). The
    band edge p + w is marked; indices at or beyond it cannot see the prefix directly under
    the Λ band."""
    curves = results.get("conflict_curves") or {}
    arms = [a for a in (arms or list(curves)) if a in curves]
    fig, axes = new_figure(1, 2, size=(10, 3.5))
    axes = axes[0]
    if not arms:
        for ax in axes:
            _no_data(ax, "no conflict curves in these results\n(re-analyse the cells)")
        return fig
    ref = curves[arms[0]]
    k = np.asarray(ref["k"])
    edge = (ref.get("delay") or 0) + (ref.get("window") or 0)
    for ax, m, title in ((axes[0], "copy_fraction_k", "copy fraction"),
                         (axes[1], "C_k", "C(k) = Δprefix / (Δprefix + Δobs)")):
        for a in arms:
            if curves[a].get(m) is not None:
                ax.plot(curves[a]["k"], curves[a][m], marker="o", ms=3, color=_colour(a),
                        label=f"{arm_label(a)} ({curves[a]['n_seeds']} seed(s))")
        oracle = curves[arms[0]].get(f"oracle_{m}")
        if oracle is not None:
            ax.plot(k, oracle, color="k", ls="--", lw=1.2, label="oracle (same inputs)")
        ax.axvline(edge - 0.5, color="tab:red", lw=0.8)
        ax.axvspan(edge - 0.5, k[-1] + 0.5, color="tab:red", alpha=0.06)
        ax.set_xlim(k[0] - 0.5, k[-1] + 0.5)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"executed chunk index k (red: band edge p + w = {edge} and beyond)")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("share of conflict states")
    axes[0].legend(fontsize=6)
    ill = " (illustration: one seed)" if is_illustration(results) else ""
    fig.suptitle(f"stale prefix toward the old goal, image showing the new one, d = "
                 f"{ref.get('delay')}: copying means exceeding the oracle{ill}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_vs_delay_v2(results: dict, arms: Sequence[str] | None = None,
                     metrics: Sequence[tuple[str, str]] = (("success_cup", "success, cup mode"),
                                                           ("ert", "ERT (ticks)")),
                     scenario: str = "S1M"):
    """Metrics vs delay d per arm: the mean over seeds with its seed-level 95% t band (a band
    needs several delays and at least two seeds; otherwise points, with error bars when there
    are intervals). The oracle's cup success is the dashed reference where drawn."""
    arms = arms_in(results, arms)
    conds = conditions_in(results, scenario)
    fig, axes = new_figure(1, len(metrics), size=(4.2 * len(metrics), 3.3))
    axes = axes[0]
    for ax, (metric, title) in zip(axes, metrics):
        if not conds or not arms:
            _no_data(ax, f"no {scenario} conditions in these results")
            continue
        scale = 100.0 if METRICS.get(metric, ("", ""))[1] == "pct" else 1.0
        for a in arms:
            rows = [(d, estimate(results, a, c, metric)) for d, c in conds]
            rows = [(d, e) for d, e in rows if e is not None]
            if not rows:
                continue
            d = np.array([r[0] for r in rows])
            m = scale * np.array([r[1]["mean"] for r in rows])
            ax.plot(d, m, marker="o", ms=4, color=_colour(a), label=arm_label(a),
                    ls="-" if len(d) > 1 else "none")
            if all(r[1]["low"] is not None for r in rows):
                lo = scale * np.array([r[1]["low"] for r in rows])
                hi = scale * np.array([r[1]["high"] for r in rows])
                if len(d) > 1:
                    ax.fill_between(d, lo, hi, color=_colour(a), alpha=0.15)
                else:
                    ax.errorbar(d, m, yerr=[m - lo, hi - m], fmt="none", color=_colour(a),
                                capsize=3)
        if metric in ("success_cup", "success_plain"):
            o = [(d, estimate(results, arms[0], c, f"oracle_{metric}")) for d, c in conds]
            o = [(d, e["mean"]) for d, e in o if e is not None]
            if o:
                ax.plot([r[0] for r in o], [scale * r[1] for r in o], color="k", ls="--",
                        lw=1, label="oracle")
        ax.set_xlabel("delay d (ticks)")
        ax.set_title(f"{scenario}: {title}" + (" (%)" if scale == 100 else ""), fontsize=9)
    axes[0].legend(fontsize=6)
    if is_illustration(results):
        fig.suptitle("illustration (one seed): no intervals", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pareto_v2(results: dict, arms: Sequence[str] | None = None,
                   condition: str = f"S1M|d={PRIMARY_DELAY}"):
    """Reactivity vs smoothness at one condition: ERT against cup spill and against jerk, each
    arm's mean with seed-level 95% t intervals on both axes (lower-left is better)."""
    arms = arms_in(results, arms)
    fig, axes = new_figure(1, 2, size=(9, 3.5))
    for ax, xm, xl in ((axes[0][0], "spill_cup", "cup spill per episode"),
                       (axes[0][1], "jerk", "jerk |a[t+1] - 2a[t] + a[t-1]|")):
        drawn = False
        for a in arms:
            x, y = estimate(results, a, condition, xm), estimate(results, a, condition, "ert")
            if x is None or y is None:
                continue
            xerr = None if x["low"] is None else [[x["mean"] - x["low"]], [x["high"] - x["mean"]]]
            yerr = None if y["low"] is None else [[y["mean"] - y["low"]], [y["high"] - y["mean"]]]
            ax.errorbar(x["mean"], y["mean"], xerr=xerr, yerr=yerr, fmt="o", color=_colour(a),
                        capsize=2, label=arm_label(a))
            drawn = True
        if not drawn:
            _no_data(ax, f"no arms at {condition}")
            continue
        ax.set_xlabel(xl), ax.set_ylabel("ERT (ticks)")
        ax.set_title(f"{condition}: lower-left is better", fontsize=9)
    axes[0][1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_band_table(table: dict, *, ax=None, title: str | None = None,
                    execution_horizon: int | None = None):
    """Executed indices beyond the band edge p + w (p = d) per delay (rows) and window
    (columns), as an annotated heatmap; a zero (red) means the mask cannot matter there."""
    own = ax is None
    fig, ax = figure_axes(ax, (4.2, 3.2))
    rows = list(table)
    cols = list(table[rows[0]]) if rows else []
    if not rows or not cols:
        _no_data(ax, "empty band table")
        return fig
    vals = np.array([[table[r][c] for c in cols] for r in rows], float)
    ax.imshow(vals, cmap="Greens", vmin=0, vmax=max(vals.max(), 1), aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = int(vals[i, j])
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="tab:red" if v == 0 else "k", fontweight="bold" if v == 0 else None)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    s = f", s = {execution_horizon}" if execution_horizon else ""
    ax.set_title(title or f"executed indices beyond p + w{s}", fontsize=9)
    if own:
        fig.tight_layout()
    return fig


def plot_band_tables(tables: dict | None = None):
    """Version 1's band table beside version 2's (`band_tables`)."""
    tables = tables or band_tables()
    fig, axes = new_figure(1, 2, size=(8.4, 3.4))
    plot_band_table(tables["v1"], ax=axes[0][0],
                    title=f"v1: H = 16, s = {V1_HORIZON} (red 0: mask cannot matter)")
    plot_band_table(tables["v2"], ax=axes[0][1], title=f"v2: H = 30, s = {V2_HORIZON}")
    fig.suptitle("executed indices d .. s-1 at or beyond the band edge p + w (p = d)", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["band_tables", "conclusion_lambda", "conclusion_prefix", "contrast", "copy_text",
           "estimate", "findings_v2", "is_illustration", "label_control_text", "load_v2",
           "parked_at_jump", "pilot_findings", "plot_band_table", "plot_band_tables",
           "plot_copy_curves_v2", "plot_pareto_v2", "plot_primary_pairs", "plot_vs_delay_v2",
           "prefix_findings_v2", "protocol_headline", "source_line_v2", "v1_control_text",
           "v1_prefix_text", "v1_scenario_text"]
