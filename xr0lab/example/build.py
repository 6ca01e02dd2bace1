"""Build the committed example model: train, write both checkpoints, measure, write metrics.

    python -m xr0lab example-model build            # about 1-2 hours on one CPU core
    python -m xr0lab example-model build --quick    # the same code, seconds (CI)

Output (default data/example_model/, never overwritten without --overwrite):
    release/      stage-2 checkpoint (release mode), released format, bf16
    xr0-async/    stage-3 checkpoint (xr0-async post-training), released format, bf16
    metrics.json  settings, per-stage losses and wall time, success per (checkpoint, scenario,
                  delay), the goal probe, checkpoint sizes
The metrics are measured on the checkpoints as stored (bf16, loaded back), so anyone can
recompute them from the committed files (`measure`).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from xr0lab.example.train import ExampleSettings, train_example, training_data

STORE_DTYPE = torch.bfloat16
DELAYS = (0, 3)
SCENARIOS = ("S1", "S1M")
QUICK = ExampleSettings(train_episodes=4, batch_size=4, stage1_steps=4, stage2_steps=2,
                        stage3_steps=2, warmup=1, checkpoint_every=2, gate_every=2,
                        gate_episodes=4)


def checkpoint_sizes(directory: Path) -> dict:
    """Bytes on disk, and how they split: the vocabulary embedding vs everything else."""
    from safetensors import safe_open

    total = sum(f.stat().st_size for f in Path(directory).iterdir() if f.is_file())
    emb = 0
    for f in Path(directory).glob("*.safetensors"):
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                if k.endswith("embed_tokens.weight"):
                    t = sf.get_tensor(k)
                    emb += t.numel() * t.element_size()
    return {"bytes": total, "embedding_bytes": emb, "other_bytes": total - emb}


def measure(checkpoints: dict[str, Path], *, episodes: int, probe_samples: int,
            settings: ExampleSettings, progress: bool = True) -> dict:
    """Success of each stored checkpoint per (scenario, delay), and the goal probe."""
    from xr0lab.example.evaluate import TEST_OFFSET, goal_probe, success, test_seeds
    from xr0lab.example.load import load_checkpoint

    seeds = test_seeds(episodes)
    out: dict = {"success": {}, "test_episodes": {"split": "test", "offset": TEST_OFFSET,
                                                   "n": int(episodes)}}
    data = training_data(dataclasses.replace(settings, train_episodes=min(
        settings.train_episodes, 100)))
    for mode, path in checkpoints.items():
        model = load_checkpoint(path)
        rows = {}
        for sc in SCENARIOS:
            for d in DELAYS:
                t0 = time.perf_counter()
                rows[f"{sc}|d={d}"] = {**success(model, sc, d, seeds,
                                                image_size=settings.image_size),
                                       "wall_s": time.perf_counter() - t0}
                if progress:
                    r = rows[f"{sc}|d={d}"]
                    print(f"  {mode:9s} {sc:3s} d={d}: plain {r['success_plain']:.3f} cup "
                          f"{r['success_cup']:.3f} ({r['wall_s']:.0f} s)", flush=True)
        out["success"][mode] = rows
        out.setdefault("goal_probe", {})[mode] = goal_probe(model, data, probe_samples)
    return out


def build(out_dir: Path | str, settings: ExampleSettings = ExampleSettings(), *,
          run_dir: Path | str = "runs/example_model", episodes: int = 256,
          probe_samples: int = 2048, overwrite: bool = False, progress: bool = True) -> dict:
    """Train (resuming under run_dir), store both checkpoints in bf16 and measure them."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is left as it is; pass --overwrite to "
                              "replace it, or choose another --out")
    t0 = time.perf_counter()
    trained = train_example(settings, run_dir, progress=progress)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    paths = {}
    for mode in ("release", "xr0-async"):
        # Weights and config only: the processor is `xr0lab.io.examples.example_processor`, whose
        # offline tokenizer would add 18.7 MB of tokenizer.json to every checkpoint.
        paths[mode] = trained[mode].save_pretrained(staging / mode, dtype=STORE_DTYPE)
    metrics = measure(paths, episodes=episodes, probe_samples=probe_samples, settings=settings,
                      progress=progress)
    record = {
        "what": "the example model: the real tiny XR-0 preset trained on DynReach S1M + S1 "
                "(docs/example_model.md)",
        "command": "python -m xr0lab example-model build",
        "settings": settings.to_dict(),
        "training": {k: {"steps": v["steps"], "wall_s": v["wall_s"], "checks": v["checks"],
                         "loss_first": v["losses"][:50], "loss_every_50": v["losses"][::50],
                         "final_loss_mean_50": float(np.mean(v["losses"][-50:]))}
                     for k, v in trained["records"].items()},
        "parameters": {"total": sum(p.numel() for p in trained["release"].parameters()),
                       "embedding": trained["release"].vlm.model.language_model
                       .embed_tokens.weight.numel()},
        "sizes": {mode: checkpoint_sizes(p) for mode, p in paths.items()},
        **metrics,
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "threads": torch.get_num_threads()},
        "wall_s": time.perf_counter() - t0,
    }
    (staging / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return record
