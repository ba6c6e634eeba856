"""Training and inference throughput of every registered model on random input.

    python -m benchmarks.models                  # CPU, batch 32
    python -m benchmarks.models --device cuda --batch-size 256 --precision bf16

Prints images/s for a training step (forward, backward, Adam) and an inference forward, with the
parameter count, so the cost of each variant can be compared on the same machine in one run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ssp_detect.engine.runtime import autocast, place_model
from ssp_detect.models.registry import create_model, get_spec, list_models


def throughput(name: str, device: torch.device, batch: int, reps: int, precision: str) -> tuple[float, float, float]:
    spec = get_spec(name)
    size = spec.patch_size if spec.input == "patch" else spec.image_size
    torch.manual_seed(0)
    model = place_model(create_model(name), device)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        with autocast(device, precision):
            loss = F.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    sync()
    train = reps * batch / (time.perf_counter() - t)
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        model(x)
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            model(x)
        sync()
    infer = reps * batch / (time.perf_counter() - t)
    return sum(p.numel() for p in model.parameters()) / 1e6, train, infer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--models", nargs="+", default=list_models())
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, batch {args.batch_size}, {args.precision}, torch threads {torch.get_num_threads()}\n")
    print(f"| {'model':<20} | {'params M':>8} | {'train img/s':>11} | {'infer img/s':>11} |")
    print(f"|{'-' * 22}|{'-' * 10}|{'-' * 13}|{'-' * 13}|")
    for name in args.models:
        params, train, infer = throughput(name, device, args.batch_size, args.reps, args.precision)
        print(f"| {name:<20} | {params:8.2f} | {train:11.1f} | {infer:11.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
