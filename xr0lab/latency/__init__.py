"""Latency of one XR-0 inference: predicted (op counts and a roofline) and measured (stage timers).

Read first: `roofline.py`, the prediction (`released_breakdown` is the released system on an
RTX 4090); it is built from `workload.py` and `opcount.py`. The measured side starts at
`profile.py`. Every file, in reading order:

  workload.py       what one inference processes (views, image size, chunk, steps), RELEASED
  opcount.py        FLOPs, bytes and kernel launches per op and per stage
  devices.py        datasheet devices (peak FLOP/s, bandwidth, launch overhead), the device table
  roofline.py       predicted seconds per stage on a device; breakdown tables and reports
  speed_options.py  the one list of what-if variants (fewer steps, VLM layers, views, resolution)
  probe.py          measure this machine as a Device (matmul, copy bandwidth, per-op dispatch)
  timers.py         stage timers hooked into XR0Model (perf_counter / CUDA events), percentiles
  pipeline.py       one inference end to end (processor, model, decode), ready to time
  profile.py        profiles, timer overhead, speed options and DiT loop measured side by side,
                    and `run_profile` behind `xr0lab profile`
  suite.py          every full-size GPU measurement in one guarded, time-budgeted run, with the
                    same device's prediction beside each (`xr0lab profile --suite gpu`)
  records.py        the JSON profile record, its tables and summaries, loading data/profile_*.json
  cuda_graph.py     the DiT loop with static shapes, replayed as a CUDA graph on GPU
  hook_overhead.py  what hook points and caching cost (behind `xr0lab hook-overhead`)

Commands: `xr0lab predict`, `xr0lab profile` (`--suite gpu` on a CUDA machine),
`xr0lab hook-overhead`. Figures of all this are in `xr0lab.plots.latency`; the
asynchronous-execution budget planner is `xr0lab.runtime.planner`.
"""
