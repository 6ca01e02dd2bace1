"""Figures and explorers. Read `figure.py` first: the one figure convention (draw into `ax=`,
return a Figure closed in pyplot, save with `save_figure`).

    figure.py         new_figure / figure_axes / save_figure
    segments.py       the one colour convention for token segments (masks, positions, mass)
    batch.py          one sample of a batched tensor, as the plots draw it
    masks.py          DiT attention masks on the queries-by-keys grid (and the grid itself)
    positions.py      token positions on one axis, the +10 gap before the noisy actions
    attention.py      one attention pattern on that grid; attention mass per key segment
    interventions.py  the chunk's change under K/V interventions, and where it heads
    flow.py           flow trajectories, chunks over flow steps, convergence, step sweeps
    objective.py      the training objective: time sampling, prefix schedule, L1 weights
    scene.py          DynReach frames with chunks drawn on them as paths
    widgets.py        ipywidgets explorers, a static figure when no frontend is running
    timeline.py       executor timelines, executed actions, pursuit-scene paths
    latency.py        latency breakdowns and the what-if explorer

matplotlib (and seaborn) are imported inside the functions, so importing a module here is cheap.
"""
