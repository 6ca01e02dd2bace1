"""The example model: the real `tiny` XR-0 preset trained on DynReach, committed under
data/example_model/, so that the inspection notebooks look at trained behaviour.

Read first: `load.py` (load_example_model, the XR0LAB_CHECKPOINT switch), then `train.py` (the
three stages), `build.py` (the one command that retrains and measures), `evaluate.py` (success
through the executor, the goal probe), `inputs.py` / `policy.py` (DynReach frames -> model inputs)
and `grounding.py` (the optional grounding objective). docs/example_model.md says what was
tried and what each attempt gave.
"""

from xr0lab.example.load import example_source, load_example_model

__all__ = ["example_source", "load_example_model"]
