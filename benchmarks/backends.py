"""Throughput of the model step, PyTorch against ONNX Runtime, on the CPU: batches of model inputs
(normalised, as the detector feeds them) -> logits, for each model named.

    python -m benchmarks.backends                                   # ssp, ssp-strata, ssp-cooc; batch 16
    python -m benchmarks.backends --models ssp --batch-size 16 --repeats 5

Weights are random with the registry's layout (the speed does not depend on them); the ONNX graph
is exported once per model before timing (the export time is printed apart). Each configuration is
run ``repeats`` times, alternating backends so that a busy machine slows both alike, after one warm-up
batch; the table gives the median images/s, the ratio and the largest |p_fake| difference seen.
PyTorch runs fp32 channels-last with one intra-op thread per core, ONNX Runtime its CPU provider with
the same number of threads. No timed assertions: this prints.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ssp", "ssp-strata", "ssp-cooc"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="Batches per timed run (default 4).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per backend (default 3).")
    args = parser.parse_args(argv)

    os.environ.setdefault("SSP_CACHE", tempfile.mkdtemp(prefix="ssp-bench-cache-"))
    import numpy as np
    import torch

    from ssp_detect.engine.backend import TorchBackend, cpu_threads, onnxruntime_backend
    from ssp_detect.engine.runtime import place_model
    from ssp_detect.models import get_spec
    from ssp_detect.models.checkpoint import save_checkpoint
    from ssp_detect.models.export import example_batch
    from ssp_detect.models.loading import load_model
    from ssp_detect.models.registry import create_model

    threads = cpu_threads()
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            torch.manual_seed(0)
            net = create_model(name)
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, torch.nn.Linear) and m.out_features == 1:
                        m.weight.normal_(0, 3.0 / m.in_features**0.5)
            path = f"{folder}/{name}.pt"
            save_checkpoint(
                path, {"model": name, "state_dict": net.state_dict(), "preprocess": get_spec(name).feed.to_dict()}
            )
            loaded = load_model(path)
            t = time.perf_counter()
            onnx = onnxruntime_backend(loaded)
            export_s = time.perf_counter() - t
            torch_backend = TorchBackend(place_model(loaded.model, torch.device("cpu")).eval(), torch.device("cpu"))
            x = example_batch(loaded, args.batch_size).contiguous(memory_format=torch.channels_last)
            speeds: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            worst = 0.0
            with torch.inference_mode():
                for backend in (torch_backend, onnx):
                    backend(x)  # warm-up
                for _ in range(args.repeats):
                    outputs = {}
                    for backend in (torch_backend, onnx):
                        t = time.perf_counter()
                        for _ in range(args.batches):
                            outputs[backend.name] = backend(x)
                        speeds[backend.name].append(args.batches * args.batch_size / (time.perf_counter() - t))
                    p = {k: torch.sigmoid(v.float()).numpy() for k, v in outputs.items()}
                    worst = max(worst, float(np.abs(p["torch"] - p["onnxruntime"]).max()))
            a, b = statistics.median(speeds["torch"]), statistics.median(speeds["onnxruntime"])
            rows.append((name, get_spec(name).feed.size, a, b, b / a, worst, export_s))
    print(
        f"\nModel step on the CPU, batch {args.batch_size}, {threads} threads, median of {args.repeats} runs of "
        f"{args.batches} batches; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{datetime.date.today()}; load average {os.getloadavg()[0]:.1f} at the end (a shared machine slows both "
        "backends alike: read the ratio)\n"
    )
    print("| model | input | PyTorch fp32 img/s | ONNX Runtime img/s | ratio | max abs delta p_fake | export s |")
    print("|---|---|---|---|---|---|---|")
    for name, size, a, b, ratio, worst, export_s in rows:
        print(f"| {name} | {size}x{size} | {a:.1f} | {b:.1f} | {ratio:.2f}x | {worst:.1e} | {export_s:.1f} |")


if __name__ == "__main__":
    main()
