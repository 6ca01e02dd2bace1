"""DynReach v2's pre-registration: `data/dynreach_v2/protocol.md` rendered from the pilot.

The protocol names what the confirmatory study will test before any confirmatory cell trains
(docs/dynreach.md §7): the primary endpoint and its test, the 12 secondary contrasts
(`study.CONFIRM_SECONDARY`), the fresh seed lists, the episodes per condition and the analysis.
Its numbers come from the code that will run (`study.study_preset("confirm")`) and from the
committed pilot (`pilot.json`, which sets the number of seeds), so the text cannot drift from
either. `write_protocol` refuses to replace an existing protocol: once committed it is fixed.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """# DynReach v2: the confirmatory study's protocol

Status: **pre-registered.** Committed at {commit_note} before any confirmatory cell trained.
Anything this file does not name is exploratory, wherever it is shown. Its machine-readable twin is
the `confirm` preset in `xr0lab/dynreach/study.py` and the contrasts `PRIMARY` and
`CONFIRM_SECONDARY` there; `results.json` records the configuration it ran with.

## Question
Does a prefix-conditioned policy (training-time real-time chunking) copy its committed prefix
instead of reacting to a jump it can see, and does XR-0's Λ band mask (w = 4) stop that?

## What the pilot showed (data/dynreach_v2/pilot.json)
{pilot_summary}

Reading (this is what the pilot is for): the rule is met by A3, but also by A5, A6 and A7, and
A6 cannot see the prefix from the late indices at all. The excess of the late copy fraction over
the oracle therefore measures how slowly any learned policy bends, not prefix use; the
confirmatory mechanism contrasts use the interventional C(k) on the late indices against A6
instead. The closed-loop signal is in the primary endpoint: in every pilot seed A3 reacts about
two ticks later than A5 and A6 (see `exploratory` in pilot.json, chosen after looking).

## Design
- World: S1M (the target jumps while the agent moves at >= 0.8 v_max, a second jump follows) is
  the primary scenario; S1 (the agent parked at the jump) is the negative control, where every
  arm should tie. 64 x 64 px images. Episodes: S1M 180 ticks, S1 120. S1M runs at every delay,
  S1 at the primary delay d = 3.
- Timeline: XR-0's own, H = 30, s = 20, d in {{0, 1, 2, 3, 4, 6}}, p = d at run time; primary
  d = 3. Executed indices beyond the band edge p + w (w = 4): {band_row}.
- Labels: executed-action chunks (the clean commands the logged closed-loop episode holds at
  t .. t + 29). A3replan is A3 trained on version 1's re-plan labels (the label control).
- Model: tier 0 (`Tier0Config(image_size=64, chunk_length=30)`: conv encoder, 4-layer DiT of
  xr0lab's own blocks, masks, positions and flow code).
- Training data: train-split episodes 0..399 of S1M and S1 (the same for every seed).
- Stage A (once per seed): encoder + DiT, no prefix, at most 3,000 steps (batch 64, cosine
  schedule over 3,000 steps); it stops at the first check (every 500 steps) at which validation
  plain success at d = 0 (128 validation episodes of each of S1M and S1, executor with s = 20)
  reaches 97%. The steps each seed used are reported.
- Stage B (per arm, from the seed's stage-A weights): 500 steps, DiT only, encoder frozen;
  no-prefix arms take the same steps.
- Arms: A3 (full mask), A5 (Λ band w = 4), A6 (hard block w = 4), A7 (XR-0 full), A1 (naive),
  and the label control A3replan, all with {n_seeds} training seeds; A0 (sync), A2 (guidance)
  and A4 (causal), which no contrast names, on the first 5 of them. Every prefix arm
  (A3-A7) marks clean tokens with the +10 RoPE gap. The oracle (arm O) runs inside every cell on
  the same episodes and timing.
- Training seeds (fresh; never used in version 1 (0-4) or the pilot ({pilot_seeds})):
  {seeds}.
- Test episodes: test-split seeds 2,100,000 .. 2,101,023 (offset 100,000; 1,024 per condition,
  the same list for every arm and seed); conflict-test states: the first 256 of them, their
  clean expert at the S1M jump, prefix p = 3 planned toward the old goal, image showing the new. Flow noise
  of episode e at cycle c is a function of (e, c) only.

## Primary endpoint
S1M, cup mode, d = 3: A5 minus A3, per training seed, on
1. success rate (mean over the 1,024 test episodes), and
2. ERT = RT - F, RT the first tick at or after the first fresh executed action from which the
   command points within cos >= 0.7 of the new goal for 3 consecutive ticks, F the oracle's RT
   on the same episode and timing (mean over the episodes where the oracle reacts; an arm that
   never reacts is censored at T - t_p).

Test: the exact two-sided sign-flip test on the {n_seeds} per-seed paired differences (floor
2^(1-n) = {floor}), Holm over the two at alpha = 0.05. Reported beside it: the paired t test
and the seed-level 95% t interval of the mean difference.

## Secondary contrasts (Holm over these 12 at alpha = 0.05; same tests)
{secondary}

## Analysis rules
- The replication unit is the training seed; episodes are averaged within a seed first.
- No p-value is printed below what its test can reach; one-seed runs print none.
- A cell is the unit of work; finished cells are never recomputed or replaced. If compute runs
  out, the analysis covers the seeds for which every primary arm finished, and says how many.
- Everything else (other delays, windows, kappa, S1E, attention mass) is exploratory.
"""


def render_protocol(pilot: dict, commit_note: str = "the commit that adds this file") -> str:
    """The protocol's text from a pilot record (`study.pilot_record`) and the confirm preset."""
    from xr0lab.dynreach.evaluate_v2 import band_table
    from xr0lab.dynreach.study import CONFIRM_SECONDARY, PILOT_SEEDS, study_preset

    v = pilot["verdict"]
    cfg = study_preset("confirm")
    n = len(cfg.seeds)
    if n < v["seeds_planned"]:
        raise ValueError(f"the pilot plans {v['seeds_planned']} seeds but the confirm preset has "
                         f"{n}: grow CONFIRM_SEEDS before pre-registering")
    lines = []
    for arm, row in v["arms"].items():
        parts = [f"{m}: excess over the oracle {row[m]['mean_excess']:+.3f} (per seed "
                 + ", ".join(f"{x:+.3f}" for x in row[m]["excess"]) + ")"
                 for m in ("copy_fraction_late", "C_late")]
        lines.append(f"- {arm} {'copies' if row['copies'] else 'does not copy'} by the pilot "
                     "rule; " + "; ".join(parts) + ".")
    power = [f"- {k}: effect d_z = "
             + ("n/a" if p["effect_dz"] is None else f"{p['effect_dz']:.3f}")
             + f", seeds for 80% power {p['n_needed']}, planned {p['n_planned']}"
             for k, p in v["power"].items()]
    summary = (f"Rule (fixed before the pilot ran): {v['rule']}.\n" + "\n".join(lines)
               + f"\n\nA3 copies: **{'yes' if v['a3_copies'] else 'no'}**.\n\nPower for the "
               "primary pair (two-sided paired t at alpha 0.025, the smaller Holm level):\n"
               + "\n".join(power) + f"\n\nSeeds planned: {v['seeds_planned']} (never fewer "
               f"than 10); the confirm preset has {n}.")
    band_row = ", ".join(f"d = {d[2:]}: {row['w=4']}" for d, row in band_table().items())
    secondary = "\n".join(f"{i + 1}. {c.name} (`{c.condition}`, `{c.metric}`)"
                          for i, c in enumerate(CONFIRM_SECONDARY))
    return TEMPLATE.format(commit_note=commit_note, pilot_summary=summary, band_row=band_row,
                           n_seeds=n, pilot_seeds=", ".join(map(str, PILOT_SEEDS)),
                           seeds=", ".join(map(str, cfg.seeds)), floor=f"{2.0 ** (1 - n):.6f}",
                           secondary=secondary)


def write_protocol(pilot: dict, path: Path | str) -> Path:
    """Write the protocol once; an existing file is never replaced (it is the pre-registration)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: a pre-registration is never rewritten; a changed "
                              "design needs a new pilot and a new, separately named protocol")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_protocol(pilot))
    return path
