"""Load the example model (or, with one switch, the released checkpoint).

    model = xr0lab.load_example_model()                    # committed, trained tiny XR-0
    model = xr0lab.load_example_model("release")           # its stage-2 (pre-post-training) twin
    XR0LAB_CHECKPOINT=/path/to/released/dir                # the released 4.7B model instead

`example_source()` says which one a notebook is looking at, so cells that need the DynReach
world (the tiny model's own scenes) can say so when a real checkpoint is loaded instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_ENV = "XR0LAB_CHECKPOINT"
MODES = ("xr0-async", "release")


@dataclass(frozen=True)
class ExampleSource:
    path: Path
    is_example: bool   # True: the committed DynReach model; False: a checkpoint given by the user

    @property
    def label(self) -> str:
        return ("the example model (tiny XR-0 trained on DynReach)" if self.is_example
                else f"the checkpoint at {self.path}")


def example_dir() -> Path:
    from xr0lab.workspace.paths import data_dir

    return data_dir() / "example_model"


def example_source(mode: str = "xr0-async", checkpoint: str | os.PathLike | None = None
                   ) -> ExampleSource:
    """Where `load_example_model` reads from: `checkpoint`, else $XR0LAB_CHECKPOINT, else the
    committed example model's `mode` checkpoint."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    given = checkpoint if checkpoint is not None else os.environ.get(CHECKPOINT_ENV) or None
    if given is not None:
        return ExampleSource(Path(given), False)
    return ExampleSource(example_dir() / mode, True)


def load_checkpoint(path: str | os.PathLike, **kwargs):
    from xr0lab.model.xr0 import XR0Model

    return XR0Model.from_pretrained(path, **kwargs).eval()


def load_example_model(mode: str = "xr0-async", *, checkpoint: str | os.PathLike | None = None,
                       **kwargs):
    """The trained example model in `mode` ("xr0-async": after post-training; "release": the
    stage-2 checkpoint), or the checkpoint named by `checkpoint` / $XR0LAB_CHECKPOINT (then
    `mode` picks the mode it runs in). Keywords go to `XR0Model.from_pretrained` (dtype,
    device, ...)."""
    src = example_source(mode, checkpoint)
    if src.is_example and not (src.path / "config.json").exists():
        raise FileNotFoundError(
            f"no example model at {src.path}; it is committed under data/example_model/ "
            "(rebuild it with `python -m xr0lab example-model build`)")
    if not src.is_example:
        kwargs.setdefault("mode", mode)
    return load_checkpoint(src.path, **kwargs)
