"""The DynReach arms as data: how each one trains in stage B and how it runs.

Every arm runs the same code paths (xr0lab's `FlowActionExpert` through the runtime's executor)
and differs only in the knobs of its `Arm`. The comparisons the statistics make are declared
here too, with the arms they name (`PRIMARY_PAIRS`, `REFERENCE_ARM`). Importing this module does
not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xr0lab.config import ActionAttention, ModeConfig, PrefixSchedule

if TYPE_CHECKING:
    from xr0lab.dynreach.data import LabelMode
    from xr0lab.runtime.config import ExecutionStrategy


@dataclass(frozen=True)
class Arm:
    """One benchmark arm (docs/dynreach.md §5): how stage B trains and how it runs.

    `train_prefix` False means stage B fine-tunes with p = 0 only (matched compute); True uses
    the prefix schedule. The mask fields are the stage-B action-action mask; the runtime is the
    executor's strategy. Arms whose training fields agree share one stage-B checkpoint
    (`training_key`), e.g. A0, A1 and A2 differ only at run time.
    """

    id: str
    label: str
    runtime: ExecutionStrategy  # how the executor runs this arm
    train_prefix: bool
    attention: ActionAttention = "causal"
    window: int | None = None
    rope_offset: int = 0
    prefix_hiding: bool = False
    reweight: bool = False
    prefix_schedule: PrefixSchedule = "released"
    # Chunk labels of stage B: None = the sweep's `TrainSettings.labels`; "replan" marks v2's
    # control arm trained on version 1's labels.
    labels: LabelMode | None = None
    # Not trained: the privileged expert planning from the capture-time state (arm O, v2).
    oracle: bool = False

    def mode(self) -> ModeConfig:
        """The DiT mode: xr0-async (prefix-capable) for prefix arms, release otherwise."""
        return ModeConfig(mode="xr0-async" if self.train_prefix else "release",
                          action_attention=self.attention, window=self.window,
                          rope_offset=self.rope_offset, prefix_hiding=self.prefix_hiding)

    @property
    def training_key(self) -> str:
        """Name of the stage-B checkpoint: equal for arms with identical training.

        >>> ARMS["A5"].training_key, ARMS["A1"].training_key == ARMS["A2"].training_key
        ('prefix-released_bandw4', True)
        """
        w = "" if self.window is None else f"w{self.window}"
        parts = [("prefix-" + self.prefix_schedule) if self.train_prefix else "noprefix",
                 self.attention + w]
        if self.rope_offset:
            parts.append(f"rope{self.rope_offset}")
        if self.prefix_hiding:
            parts.append("hide")
        if self.reweight:
            parts.append("rw")
        if self.labels == "replan":
            parts.append("replan")
        return "_".join(parts)

    def prefix_length(self, delay: int, execution_horizon: int = 8, chunk: int = 16,
                      min_prefix: int = 1) -> int:
        """Evaluation prefix p for a nominal delay d: p = max(d, min_prefix) for prefix arms
        (p >= d is the seamless condition; version 1 used min_prefix = 1 to keep d = 0
        conditioned on the committed action, version 2 runs p = d), else 0.
        """
        if self.runtime != "prefix":
            return 0
        p = max(delay, min_prefix)
        if p > chunk - execution_horizon:
            raise ValueError(f"arm {self.id}: p={p} exceeds H - s = {chunk - execution_horizon}")
        return p


def _arms() -> dict[str, Arm]:
    out = {
        "A0": Arm("A0", "sync", "sync", False),
        "A1": Arm("A1", "naive", "naive", False),
        "A2": Arm("A2", "IT-RTC (guidance)", "guided", False),
        "A3": Arm("A3", "TT-RTC (full mask)", "prefix", True, "full"),
        "A4": Arm("A4", "causal (release mask)", "prefix", True, "causal"),
    }
    for w in (1, 2, 4, 8):
        out[f"A5w{w}"] = Arm(f"A5w{w}", f"Λ band w={w}", "prefix", True, "band", w)
    for w in (1, 2, 4, 8):
        out[f"A6w{w}"] = Arm(f"A6w{w}", f"Λ hard block w={w}", "prefix", True, "hard_block", w)
    out["A7"] = Arm("A7", "XR-0 full (band 4, RoPE +10, hiding, reweight)", "prefix", True,
                    "band", 4, rope_offset=10, prefix_hiding=True, reweight=True)
    # Not an arm of the spec's table: A3 trained with the report's p ~ U{0..6} schedule.
    out["A3paper"] = dataclasses.replace(out["A3"], id="A3paper", prefix_schedule="paper",
                                         label="TT-RTC, paper schedule p ~ U{0..6}")
    return out


ARMS: dict[str, Arm] = _arms()
# Shorthand used by the spec's primary endpoint: A5 and A6 at w = 4.
ARMS["A5"] = dataclasses.replace(ARMS["A5w4"], id="A5")
ARMS["A6"] = dataclasses.replace(ARMS["A6w4"], id="A6")


def _arms_v2() -> dict[str, Arm]:
    """Version 2's arms (docs/dynreach.md §5): every prefix arm marks its clean tokens with the
    +10 RoPE gap, so A3-A6 differ only in the mask; A3replan is A3 trained on version 1's
    re-plan labels (the label control); O is the oracle."""
    out = {k: ARMS[k] for k in ("A0", "A1", "A2", "A7")}
    for k in ("A3", "A4", "A5", "A6", *(f"A5w{w}" for w in (1, 2, 4, 8)),
              *(f"A6w{w}" for w in (1, 2, 4, 8))):
        out[k] = dataclasses.replace(ARMS[k], rope_offset=10)
    out["A3replan"] = dataclasses.replace(out["A3"], id="A3replan", labels="replan",
                                          label="TT-RTC (full mask), re-plan labels")
    out["O"] = Arm("O", "oracle (privileged expert)", "prefix", False, oracle=True)
    return out


ARMS_V2: dict[str, Arm] = _arms_v2()
BENCHMARKS = ("v1", "v2")


def get_arm(arm_id: str, benchmark: str = "v1") -> Arm:
    """The arm `arm_id` of benchmark version `benchmark` ("v1": the committed study's arms)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    arms = ARMS if benchmark == "v1" else ARMS_V2
    if arm_id not in arms:
        raise KeyError(f"unknown {benchmark} arm {arm_id!r}; known: {', '.join(arms)}")
    return arms[arm_id]


def beyond_band(delay: int, window: int, execution_horizon: int, prefix: int | None = None) -> int:
    """How many executed indices (d .. s - 1) lie at or beyond the band edge p + w, where a
    noisy token cannot see the prefix directly (docs/dynreach.md §3; p = d by default). A
    configuration where this is 0 cannot test the mask.

    >>> beyond_band(3, 4, 20), beyond_band(4, 4, 8)
    (13, 0)
    """
    p = delay if prefix is None else prefix
    return max(0, execution_horizon - max(delay, p + window))


# The comparisons of the statistics (docs/dynreach.md §7), declared up front: the primary
# endpoint contrasts the full mask (A3) with the Λ masks at w = 4, and every other arm is
# compared with that same reference arm, the first of every primary pair (the secondary family).
PRIMARY_PAIRS: tuple[tuple[str, str], ...] = (("A3", "A5"), ("A3", "A6"))
REFERENCE_ARM: str = PRIMARY_PAIRS[0][0]
