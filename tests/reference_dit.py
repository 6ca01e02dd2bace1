"""An independent, functional reading of the DiT of docs/architecture.md §3-6, written from the
documented design with plain tensor ops and explicit loops (no xr0lab modules), to check
the model against.
"""

import math

import torch
import torch.nn.functional as F


def _lin(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def _rms(x, w, eps=1e-6):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _proj(sd, name, x):
    return _lin(F.gelu(_lin(x, sd[f"{name}.layers.0.weight"]), approximate="tanh"),
                sd[f"{name}.layers.2.weight"])


def _rope_1d(x, pos, theta):
    h = x.shape[-1]
    inv = theta ** (-torch.arange(0, h, 2, dtype=torch.float64) / h)
    ang = pos[:, None].double() * inv[None]  # (S, h/2)
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()
    x1, x2 = x[..., : h // 2], x[..., h // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def reference_mask(prompt_mask_row, T, kind, w, p):
    L, S = len(prompt_mask_row), 2 + T
    m = torch.zeros(S, L + S, dtype=torch.bool)
    for r in range(S):
        for c in range(L):
            m[r, c] = bool(prompt_mask_row[c])
        for c in range(S):
            if r < 2:
                m[r, L + c] = c <= r
            elif c < 2:
                m[r, L + c] = True
            else:
                i, j = r - 2, c - 2
                if kind == "causal":
                    m[r, L + c] = j <= i
                elif kind == "band":
                    m[r, L + c] = i - w <= j <= i
    return m


def reference_velocity(sd, cfg, keys, values, prompt_mask, prompt_pos, x, t, state, action_mask,
                       prefix_length=0):
    """keys/values: per DiT layer (B, K, L, h). prompt_pos: (B, L) 1-D positions."""
    D, h = cfg.dit.hidden_size, cfg.dit.head_dim
    H = D // h
    mode = cfg.mode
    B, T, _ = x.shape
    half = cfg.dit.timestep_dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    args = 1000 * t[:, None] * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], -1)
    temb = _lin(F.silu(_lin(emb, sd["t_embedder.mlp.0.weight"])), sd["t_embedder.mlp.2.weight"])
    mods_all = _lin(temb, sd["t_projector.layers.0.weight"], sd["t_projector.layers.0.bias"]).view(B, 6, D)
    out = []
    for b in range(B):
        seq = torch.cat([sd["sink.weight"], _proj(sd, "state_projector", state[b]),
                         _proj(sd, "action_projector", x[b] * action_mask[b])])
        P = int(prompt_pos[b][prompt_mask[b].bool()].max())
        pos = torch.tensor([P + 1 + j + (mode.rope_offset if j >= 2 + prefix_length else 0)
                            for j in range(2 + T)])
        mask = reference_mask(prompt_mask[b], T, mode.action_attention, mode.window, prefix_length)
        for i in range(cfg.dit.num_layers):
            pre = f"dit.layers.{i}."
            mods = sd[pre + "adaln_table"] + mods_all[b]
            s1, c1, g1, s2, c2, g2 = mods
            y = _rms(seq, sd[pre + "input_layernorm.weight"]) * (1 + c1) + s1
            qkv = _lin(y, sd[pre + "attn.qkv_proj.weight"], sd[pre + "attn.qkv_proj.bias"])
            q, k, v = qkv.view(-1, 3, H, h).unbind(1)  # (S, H, h)
            heads = []
            for head in range(H):
                kv_head = head // (H // keys[i].shape[1])
                qh = _rope_1d(_rms(q[:, head], sd[pre + "attn.q_norm.weight"]), pos, cfg.vlm.rope_theta)
                kh = _rope_1d(_rms(k[:, head], sd[pre + "attn.k_norm.weight"]), pos, cfg.vlm.rope_theta)
                K = torch.cat([keys[i][b, kv_head], kh])
                V = torch.cat([values[i][b, kv_head], v[:, head]])
                s = (qh @ K.T) / math.sqrt(h)
                s = s.masked_fill(~mask, float("-inf"))
                heads.append(torch.softmax(s, -1) @ V)
            y = _lin(torch.cat(heads, -1), sd[pre + "attn.o_proj.weight"])
            seq = _rms(seq + g1 * y, sd[pre + "middle_layernorm.weight"])
            y = _rms(seq, sd[pre + "post_layernorm.weight"]) * (1 + c2) + s2
            y = _lin(F.silu(_lin(y, sd[pre + "mlp.gate_proj.weight"])) * _lin(y, sd[pre + "mlp.up_proj.weight"]),
                     sd[pre + "mlp.down_proj.weight"])
            seq = _rms(seq + g2 * y, sd[pre + "final_layernorm.weight"])
        out.append(_proj(sd, "action_output_layer", seq[2:]))
    return torch.stack(out)


def reference_sample(sd, cfg, keys, values, prompt_mask, prompt_pos, noise, state, action_mask,
                     steps, prefix=None, prefix_length=0):
    x = noise.clone()
    if prefix_length:
        x[:, :prefix_length] = prefix[:, :prefix_length]
    for k in range(steps):
        t = torch.full((x.shape[0],), k / steps)
        v = reference_velocity(sd, cfg, keys, values, prompt_mask, prompt_pos, x, t, state,
                               action_mask, prefix_length)
        v[:, :prefix_length] = 0
        x = x + v / steps
    return x
