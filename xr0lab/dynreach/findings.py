"""Findings of the DynReach notebooks (05 and 06): text whose every number is read from results.

Each function takes a merged results dict (`xr0lab.dynreach.merge.merge_results`, or the
committed `data/dynreach_results.json`) and returns a string; the notebooks only print them.
"""

from __future__ import annotations

import numpy as np

from xr0lab.dynreach.arms import ARMS, PRIMARY_PAIRS
from xr0lab.dynreach.results import late_copy, present, scenarios_in, window_arms
from xr0lab.dynreach.scenarios import SCENARIO_NAMES


def _fmt(e, digits: int = 2, pct: bool = False) -> str:
    if e is None:
        return "n/a"
    s = 100.0 if pct else 1.0
    u = "%" if pct else ""
    return f"{e['mean'] * s:.{digits}f}{u} [{e['low'] * s:.{digits}f}, {e['high'] * s:.{digits}f}]"


def _seeds(results: dict) -> list[int]:
    return sorted({int(c.rsplit("seed", 1)[1]) for c in results["meta"]["cells"]})


def one_seed(results: dict) -> bool:
    """A one-seed run (quick mode) is an illustration: its text prints no p-values."""
    return "meta" in results and len(_seeds(results)) <= 1


ILLUSTRATION = ("One training seed: an illustration, not a test. No p-values are printed "
                "(the replication unit is the training seed).")
# Version 1's p-values come from a percentile bootstrap over 3-5 seeds, whose intervals are far
# too narrow (docs/dynreach.md §0); version 1 is the negative control, not a finding.
V1_CAVEAT = "v1's seed+episode bootstrap, too narrow with 3-5 seeds"


def _verdict(results: dict, r: dict, *keys: str) -> str:
    """', Holm p = 0.012, significant (v1 ...)' or '' for one-seed results."""
    if one_seed(results):
        return ""
    parts = [f"{'Holm p' if k == 'p_holm' else 'p'} = {r[k]:.3g}" for k in keys]
    verdict = "significant" if r["p_holm"] < 0.05 else "not significant"
    return ", " + ", ".join(parts) + f", {verdict} by {V1_CAVEAT}"


def source_line(results: dict, full: bool, file: str = "data/dynreach_results.json") -> str:
    m = results["meta"]
    seeds = sorted({int(c.rsplit("seed", 1)[1]) for c in m["cells"]})
    n = m["config"]["eval"]["n_episodes"]
    what = f"committed {m['name']!r} sweep results ({file})" if full else \
        f"the {m['name']!r} sweep run in this notebook"
    return (f"Source: {what}; {len(seeds)} training seed(s), {n} test episodes per condition, "
            f"{m['threads']} thread(s), created {m['created']}.")


def primary_text(results: dict) -> str:
    lines = []
    if one_seed(results):
        lines.append(ILLUSTRATION)
    for r in results.get("primary", []):
        lines.append(f"ERT({r['a']}) - ERT({r['b']}) at d = 4, S1 cup: {r['mean']:+.2f} ticks "
                     f"(95% CI [{r['low']:+.2f}, {r['high']:+.2f}]{_verdict(results, r, 'p_holm')}"
                     f"; {r['n_seeds']} seeds x {r['n_episodes'] // max(r['n_seeds'], 1)}"
                     f" episodes).")
    named = "/".join(dict.fromkeys(a for pair in PRIMARY_PAIRS for a in pair))
    return "\n".join(lines) if lines else f"Primary endpoint: arms {named} not all present."


def findings_lambda(results: dict, delay: int = 4) -> str:
    """Notebook 05's findings, every number read from `results`."""
    cond = f"S1|d={delay}"
    arms = present(results, ("A1", "A3", "A4", "A5", "A6", "A7"))
    out = [primary_text(results)]
    for a in arms:
        cf = results["conflict"].get(a, {})
        C = late_copy(cf)
        mv = results.get("conflict_moving", {}).get(a)
        Cm = late_copy(mv)
        out.append(
            f"{a}: success (cup) {_fmt(results['conditions'][a].get(cond, {}).get('success_cup'), 1, True)}, "
            f"ERT {_fmt(results['conditions'][a].get(cond, {}).get('ert'))} ticks, "
            f"obs-following index {cf.get('obs_following_index', float('nan')):.2f}, "
            f"copy fraction {cf.get('copy_fraction', float('nan')):.2f}"
            + (f", mean C(k >= 8) = {C:.2f}" if C is not None else "")
            + (f"; moving agent: obs-following {mv['obs_following_index']:.2f}, copy fraction "
               f"{mv['copy_fraction']:.2f}" if mv else "")
            + (f", mean C(k >= 8) = {Cm:.2f}" if Cm is not None else "") + ".")
    att = results.get("attention", {})
    if "A3" in att and "A5" in att:
        out.append(f"Attention mass on the prefix from late rows (k >= 8), mean over layers: "
                   f"A3 {np.mean(att['A3']['prefix_mass_late']):.3f} vs A5 "
                   f"{np.mean(att['A5']['prefix_mass_late']):.3f} (the band removes direct "
                   f"attention by construction; this is not a measure of influence).")
    probe = results.get("stage_a", {})
    if probe:
        r2 = [v["probe"]["r2"] for v in probe.values()]
        readable = ("the goal is linearly readable, so copying the prefix would be a shortcut, "
                    "not blindness" if np.min(r2) >= 0.8 else
                    "the goal is only partly readable in this run (undertrained encoder), so "
                    "copying cannot be told apart from blindness here")
        out.append(f"Linear probe of the visible goal from the context tokens: held-out R² "
                   f"{np.mean(r2):.3f} (min {np.min(r2):.3f} over {len(r2)} seed(s)); "
                   f"{readable}.")
    return "\n".join(out)


def findings_window(results: dict, delay: int = 4, scenario: str = "S1") -> str:
    """One line per Λ-band window: cup success, ERT and late C(k), read from `results`."""
    cond = f"{scenario}|d={delay}"
    parts = []
    for w, a in window_arms(results):
        e = results["conditions"][a].get(cond)
        if e is None:
            continue
        c = late_copy(results.get("conflict", {}).get(a))
        parts.append(f"w = {w} ({a}): success {_fmt(e.get('success_cup'), 1, True)}, ERT "
                     f"{_fmt(e.get('ert'))}" + (f", C(k >= 8) {c:.2f}" if c is not None else ""))
    if not parts:
        return f"No Λ-band arms evaluated at {cond}."
    return f"Λ band window at {cond} (cup): " + "; ".join(parts) + "."


def findings_scenarios(results: dict, delay: int = 4) -> str:
    """Findings of the S1-S3 sweep (one policy per seed trained on all three), from `results`:
    per scenario, each arm's cup success and ERT at `delay`, and the paired ERT differences of
    the primary pairs, A3 - A5 / A3 - A6 (secondary family, Holm over all its tests)."""
    out = []
    for sc in scenarios_in(results):
        cond = f"{sc}|d={delay}"
        parts = []
        for a in present(results, ("A0", "A1", "A3", "A4", "A5", "A6", "A7")):
            e = results["conditions"][a].get(cond)
            if e is not None:
                parts.append(f"{a} {_fmt(e.get('success_cup'), 1, True)} / "
                             f"{_fmt(e.get('ert'))}")
        out.append(f"{sc} ({SCENARIO_NAMES.get(sc, sc)}), d = {delay}, cup success / ERT "
                   f"(ticks): " + "; ".join(parts) + ".")
        for r in results.get("secondary", []) + results.get("primary", []):
            if r["condition"].split(" ")[0] == cond and r["metric"] == "ert" and \
                    (r["a"], r["b"]) in PRIMARY_PAIRS:
                out.append(f"  ERT({r['a']}) - ERT({r['b']}) in {sc}: {r['mean']:+.2f} ticks "
                           f"[{r['low']:+.2f}, {r['high']:+.2f}]"
                           f"{_verdict(results, r, 'p_value', 'p_holm')}.")
    wall = results.get("conflict_wall", {})
    parts = []
    for a in present(results, ("A3", "A4", "A5", "A6", "A7")):
        cf = wall.get(a)
        if cf is None:
            continue
        parts.append(f"{a} C(k >= 8) = {late_copy(cf):.2f}, late actions "
                     f"{cf['late_distance_fresh']:.4f} from the detour vs "
                     f"{cf['late_distance_stale']:.4f} from the stale straight plan")
    if parts:
        out.append("S3 conflict test (stale straight-line prefix, wall in the image): "
                   + "; ".join(parts) + ".")
    return "\n".join(out)


def findings_prefix(results: dict, delay: int = 4, scenario: str = "S1") -> str:
    """Notebook 06's findings, every number read from `results`."""
    cond = f"{scenario}|d={delay}"
    out = [ILLUSTRATION] if one_seed(results) else []
    for a in present(results, ("A0", "A1", "A2", "A3")):
        e = results["conditions"][a].get(cond)
        if e is None:
            continue
        p = e["pooled"]
        out.append(f"{a} ({ARMS[a].label}) at d = {delay} in {scenario}: success plain "
                   f"{_fmt(e['success_plain'], 1, True)}, cup {_fmt(e['success_cup'], 1, True)}; "
                   f"spill {_fmt(e['spill_cup'], 3)}; boundary ratio {p['boundary_ratio']:.2f}; "
                   f"jerk {e['jerk']['mean']:.4f}; throughput {p['throughput_cup']:.1f} (cup) / "
                   f"{p['throughput_plain']:.1f} (plain) successes per 1,000 ticks.")
    sec = [r for r in results.get("secondary", []) if r["condition"] == cond and
           r["b"] in ("A0", "A1", "A2") and r["metric"] == "success_cup"]
    for r in sec:
        out.append(f"Paired: success_cup({r['a']}) - success_cup({r['b']}) = "
                   f"{100 * r['mean']:+.1f} points [{100 * r['low']:+.1f}, "
                   f"{100 * r['high']:+.1f}]{_verdict(results, r, 'p_holm')}.")
    cost = results.get("cost", {})
    if "A2" in cost and "A3" in cost:
        out.append(f"Cost per chunk: guidance (A2) {cost['A2']['denoise_flops'] / 1e6:.0f} MFLOP "
                   f"vs trained prefix (A3) {cost['A3']['denoise_flops'] / 1e6:.0f} MFLOP "
                   f"({cost['A2']['chunk_seconds_median'] * 1e3:.1f} ms vs "
                   f"{cost['A3']['chunk_seconds_median'] * 1e3:.1f} ms on this CPU).")
    return "\n".join(out)
