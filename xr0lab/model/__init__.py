"""The XR-0 model: a Qwen3-VL prefill whose per-layer K/V conditions a flow-matching DiT.

Read in this order:

    masks.py      who attends whom: pure mask builders (causal, Λ band, hard block, prefix hiding)
                  and the `TokenLayout` of [VLM | sink | state | prefix | noisy] columns
    positions.py  DiT positions (continuing the prompt's, +10 gap for noisy tokens) and RoPE
    dit.py        one DiT layer (adaLN, joint attention over [VLM K/V ; own K/V], SwiGLU) and
                  the stack; projectors and the timestep embedder
    vlm.py        transformers' Qwen3-VL, built and prefilled once into an immutable `VLMContext`
    expert.py     `FlowActionExpert`: the DiT + heads acting on a context (prepare, one network
                  step, sampling through `xr0lab.flow`)
    loss.py       the post-training objective (prefix schedule, hiding, L1 reweighting, frequency)
    xr0.py        `XR0Model`: processor-format inputs -> prefill -> sample; `compute_loss`
    checks.py     input validation with errors that name the input and what was expected

The design is in docs/architecture.md; the flow convention (t = 0 noise, t = 1 data) in
`xr0lab/flow.py`.
"""
