"""The speed options: what-if variants of one inference that need no new kernels.

One list (`speed_options`), used twice: `xr0lab.latency.roofline.speed_option_table` predicts
each option as a `Workload` (`workload_variants`), and `xr0lab.latency.profile` builds and times
each one as a pipeline, side by side. How far each knob goes is the caller's choice. Compilation
is not in the list: it changes the code, not the shapes, so each user adds its own (the
prediction fuses every stage's elementwise ops, the measurement compiles the DiT step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from xr0lab.config import XR0Config
from xr0lab.latency.workload import Workload, whole_tokens


@dataclass(frozen=True)
class SpeedOption:
    """One variant of the baseline: the knobs it changes (None: the baseline's value)."""

    label: str
    num_steps: int | None = None
    vlm_layers: int | None = None  # the VLM truncated to its first layers: a different model
    dit_layers: int | None = None  # set only where the DiT must shrink with the VLM
    views: int | None = None
    image_hw: tuple[int, int] | None = None

    def knobs(self) -> dict:
        """The changed knobs by name (what to `replace` in a workload)."""
        return {k: v for k, v in (("num_steps", self.num_steps), ("vlm_layers", self.vlm_layers),
                                  ("dit_layers", self.dit_layers), ("views", self.views),
                                  ("image_hw", self.image_hw)) if v is not None}


def speed_options(config: XR0Config, *, num_steps: int, views: int, image_hw: tuple[int, int],
                  vlm_layers: int, dit_layers: int, fewer_steps: Sequence[int],
                  vlm_cut: int) -> list[SpeedOption]:
    """The baseline, then every option that changes something, in this order:
    - fewer flow steps: each count in `fewer_steps` below `num_steps`;
    - the VLM truncated to `vlm_cut` layers: the DiT keeps pairing the last ones, and where it is
      deeper than the cut it shrinks with it;
    - one view fewer;
    - half the resolution, snapped down to whole visual tokens.

    >>> from xr0lab.config import preset
    >>> [o.label for o in speed_options(preset("tiny"), num_steps=5, views=2, image_hw=(128, 128),
    ...                                 vlm_layers=8, dit_layers=8, fewer_steps=(2, 1), vlm_cut=4)]
    ['baseline', 'steps 5->2', 'steps 5->1', 'VLM layers 8->4 (DiT 8->4)', 'views 2->1',
     'resolution 128x128->64x64']
    """
    out = [SpeedOption("baseline")]
    for n in dict.fromkeys(n for n in fewer_steps if n < num_steps):  # in order, once each
        out.append(SpeedOption(f"steps {num_steps}->{n}", num_steps=n))
    if 1 <= vlm_cut < vlm_layers:
        dit = min(dit_layers, vlm_cut)
        label = f"VLM layers {vlm_layers}->{vlm_cut}"
        if dit < dit_layers:
            label += f" (DiT {dit_layers}->{dit})"
        out.append(SpeedOption(label, vlm_layers=vlm_cut,
                               dit_layers=dit if dit < dit_layers else None))
    if views > 1:
        out.append(SpeedOption(f"views {views}->{views - 1}", views=views - 1))
    h, w = image_hw
    half = whole_tokens(config, h // 2, w // 2)
    if half != (h, w):
        out.append(SpeedOption(f"resolution {h}x{w}->{half[0]}x{half[1]}", image_hw=half))
    return out


def workload_variants(workload: Workload, config: XR0Config) -> dict[str, Workload]:
    """The speed options of a workload, as workloads keyed by label: half and one flow step, a
    VLM a quarter shallower (never below the DiT's depth, so the DiT is unchanged), one view
    fewer, half resolution."""
    s = workload.resolve(config)
    options = speed_options(config, num_steps=s.num_steps, views=s.views,
                            image_hw=workload.image_hw, vlm_layers=s.vlm_layers,
                            dit_layers=s.dit_layers, fewer_steps=(max(1, s.num_steps // 2), 1),
                            vlm_cut=max(s.dit_layers, s.vlm_layers * 3 // 4))
    return {o.label: replace(workload, **o.knobs()) for o in options}
