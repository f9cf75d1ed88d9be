#!/usr/bin/python3
"""Peer for bench/train.ts: one full training step (forward, backward, AdamW) of the `tiny`
text-to-image DiT written in PyTorch with the same architecture as lib/nn/dit.ts and
lib/nn/text_encoder.ts (the arithmetic is the one scripts/fixtures/make_dit_parity.py checks to
1e-4): patchify, adaLN-Zero blocks with self-attention, cross-attention to the text tokens and
a GELU(tanh) MLP, a CLIP-style text encoder (bidirectional, as the preset) with padding masks, epsilon-MSE loss.
Attention is the unfused matmul-softmax-matmul (torch 1.13 has no fused cpu attention).

Prints one JSON object: parameter count, median seconds per step, samples per second.
Run with Debian's python3 (python3-torch): /usr/bin/python3 bench/peers/train_torch.py --threads 2
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

TINY = dict(image_size=32, patch_size=4, channels=3, width=192, depth=6, heads=3, mlp_ratio=4,
            text_width=128, context_length=32, vocab_size=4096, text_depth=2, text_heads=2, text_mlp_ratio=4,
            text_causal=False, timestep_dim=256)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x, context, causal=False, kv_lengths=None):
        b, lq, w = x.shape
        lk = context.shape[1]
        d = w // self.heads

        def split(t, length):
            return t.reshape(b, length, self.heads, d).permute(0, 2, 1, 3)

        q, k, v = split(self.q(x), lq), split(self.k(context), lk), split(self.v(context), lk)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        mask = torch.zeros(b, 1, lq, lk, dtype=torch.bool)
        if causal:
            mask = mask | (torch.arange(lk)[None, :] > torch.arange(lq)[:, None])[None, None]
        if kv_lengths is not None:
            mask = mask | (torch.arange(lk)[None, :] >= kv_lengths[:, None])[:, None, None, :]
        out = torch.softmax(scores.masked_fill(mask, float('-inf')), dim=-1) @ v
        return self.out(out.permute(0, 2, 1, 3).reshape(b, lq, w))


class MLP(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate='tanh'))


class TextBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio, causal):
        super().__init__()
        self.causal = causal
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, width * mlp_ratio)

    def forward(self, x, lengths):
        h = self.norm1(x)
        x = x + self.attn(h, h, causal=self.causal, kv_lengths=lengths)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        tw = c['text_width']
        self.token = nn.Embedding(c['vocab_size'], tw)
        self.position = nn.Parameter(torch.randn(c['context_length'], tw) * 0.01)
        self.blocks = nn.ModuleList(TextBlock(tw, c['text_heads'], c['text_mlp_ratio'], c['text_causal']) for _ in range(c['text_depth']))
        self.norm = nn.LayerNorm(tw)

    def forward(self, ids, lengths):
        x = self.token(ids) + self.position[None]
        for block in self.blocks:
            x = block(x, lengths)
        tokens = self.norm(x)
        return tokens, tokens[torch.arange(ids.shape[0]), lengths - 1]


def modulate(x, shift, scale):
    return F.layer_norm(x, (x.shape[-1],), None, None, 1e-6) * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio):
        super().__init__()
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.cross = Attention(width, heads)
        self.mlp = MLP(width, width * mlp_ratio)
        self.adaLN = nn.Linear(width, 6 * width)

    def forward(self, x, cond, context, lengths):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(cond).chunk(6, dim=1)
        h = modulate(x, shift1, scale1)
        x = x + gate1[:, None] * self.attn(h, h)
        x = x + self.cross(self.norm2(x), context, kv_lengths=lengths)
        return x + gate2[:, None] * self.mlp(modulate(x, shift2, scale2))


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        w, ps = c['width'], c['patch_size']
        n = (c['image_size'] // ps) ** 2
        self.patch = nn.Linear(c['channels'] * ps * ps, w)
        self.pos = nn.Parameter(torch.randn(n, w) * 0.02)
        self.time_fc1 = nn.Linear(c['timestep_dim'], w)
        self.time_fc2 = nn.Linear(w, w)
        self.textPool = nn.Linear(c['text_width'], w)
        self.textProj = nn.Linear(c['text_width'], w)
        self.blocks = nn.ModuleList(DiTBlock(w, c['heads'], c['mlp_ratio']) for _ in range(c['depth']))
        self.final_adaLN = nn.Linear(w, 2 * w)
        self.final_linear = nn.Linear(w, ps * ps * c['channels'])
        self.text = TextEncoder(c)

    def timestep_embedding(self, t):
        half = self.c['timestep_dim'] // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, ids, lengths):
        b, ch, h, w = x.shape
        ps = self.c['patch_size']
        gh, gw = h // ps, w // ps
        text_tokens, pooled = self.text(ids, lengths)
        patches = x.reshape(b, ch, gh, ps, gw, ps).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, ch * ps * ps)
        tokens = self.patch(patches) + self.pos[None]
        temb = self.time_fc2(F.silu(self.time_fc1(self.timestep_embedding(t))))
        cond = F.silu(temb + self.textPool(pooled))
        context = self.textProj(text_tokens)
        for block in self.blocks:
            tokens = block(tokens, cond, context, lengths)
        shift, scale = self.final_adaLN(cond).chunk(2, dim=1)
        out = self.final_linear(modulate(tokens, shift, scale))
        return out.reshape(b, gh, gw, ps, ps, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, h, w)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--vocab', type=int, default=TINY['vocab_size'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = dict(TINY, vocab_size=args.vocab)
    model = DiT(c)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    b = args.batch
    x0 = torch.randn(b, c['channels'], c['image_size'], c['image_size'])
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (b,))
    ids = torch.randint(0, c['vocab_size'], (b, c['context_length']))
    lengths = torch.randint(4, c['context_length'] + 1, (b,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x0, t, ids, lengths), noise)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({
        'version': torch.__version__,
        'threads': torch.get_num_threads(),
        'parameters': sum(p.numel() for p in model.parameters()),
        'step_seconds': seconds,
        'samples_per_second': b / seconds,
    }))


if __name__ == '__main__':
    main()
