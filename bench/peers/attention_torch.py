#!/usr/bin/python3
"""Peer for bench/kernels_attention.ts: unfused attention on PyTorch's CPU backend.

softmax(scale q k^T) v as matmul, softmax, matmul (the [L, L] scores materialised), and its
autograd backward. Prints one JSON object on stdout.

  time mode:   median milliseconds of forward and forward+backward over --iters runs
  --memory:    growth of the process's peak RSS over one forward+backward (bytes)

Run with Debian's python3 (python3-torch): /usr/bin/python3 bench/peers/attention_torch.py ...
"""
import argparse
import json
import statistics
import time

import torch


def attention(q, k, v, scale):
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def inputs(args, grad):
    shape = (args.batch, args.heads, args.seq, args.dim)
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen).requires_grad_(grad) for _ in range(3)]


def median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss():
    """Sets the peak RSS (VmHWM) to the current RSS, so import-time peaks do not hide the op's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = args.dim ** -0.5

    if args.memory:
        q, k, v = inputs(args, True)
        dout = torch.randn(q.shape)
        reset_peak_rss()
        before = status_bytes("VmRSS")
        attention(q, k, v, scale).backward(dout)
        growth = status_bytes("VmHWM") - before
        print(json.dumps({"peer": "torch", "version": torch.__version__, "peak_rss_growth_bytes": growth}))
        return

    q, k, v = inputs(args, False)
    with torch.no_grad():
        forward_ms = median_ms(lambda: attention(q, k, v, scale), args.iters, args.warmup)
    qg, kg, vg = inputs(args, True)
    dout = torch.randn(q.shape)

    def forward_backward():
        qg.grad = kg.grad = vg.grad = None
        attention(qg, kg, vg, scale).backward(dout)

    forward_backward_ms = median_ms(forward_backward, args.iters, args.warmup)
    print(json.dumps({
        "peer": "torch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "forward_ms": forward_ms,
        "forward_backward_ms": forward_backward_ms,
    }))


if __name__ == "__main__":
    main()
