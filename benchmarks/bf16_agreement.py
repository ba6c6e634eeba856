"""How far bf16 autocast on the CPU moves p_fake and the verdicts, against fp32, on the same inputs.

    python -m benchmarks.bf16_agreement --data data/demo --weights runs/demo/ssp-lite/best.pt --official

For each checkpoint (and, with ``--official``, an official-format ``ssp`` file with random weights
in the official layout: ``srm.kernel`` and ``disc.*``, labels real = 1; its head rescaled so that its
logits on these images have mean 0 and standard deviation 2, as a trained model's spread, since a
random BatchNorm ResNet-50 gives p_fake 0 or 1 everywhere), every image under ``--data``
is decoded once and preprocessed as the checkpoint asks, with each of ``--seeds`` seeds of the
seeded patch mode (several simple-patch draws per image: more inputs from few images); the same
batches are scored by PyTorch in fp32 and in bf16 autocast. Prints, per checkpoint: inputs, max and
mean |delta p_fake|, decisions flipped at the checkpoint's threshold per thousand, and the share of
inputs within 0.05 of it (where a small move can flip a verdict). No timed assertions: this prints.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Folder of images (searched recursively).")
    parser.add_argument("--weights", nargs="*", default=[], help="Checkpoints to measure.")
    parser.add_argument("--official", action="store_true", help="Also an official-format ssp file, random weights.")
    parser.add_argument("--seeds", type=int, default=3, help="Seeded patch draws per image (default 3).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-images", type=int, default=400)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from ssp_detect.data.decode import decode_image
    from ssp_detect.data.preprocess import PatchOptions, Preprocessor
    from ssp_detect.engine.backend import TorchBackend
    from ssp_detect.engine.runtime import model_input, place_model
    from ssp_detect.models.loading import load_model
    from ssp_detect.models.registry import create_model, get_spec

    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in suffixes)[: args.max_images]
    images = [decode_image(p).pixels for p in files]
    weights = list(args.weights)
    folder = tempfile.TemporaryDirectory()
    if args.official:
        torch.manual_seed(0)
        net, net_feed = create_model("ssp"), get_spec("ssp").feed
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
            # Random BatchNorm ResNets saturate (every p_fake 0 or 1, where no precision shows): rescale the
            # head so that the logits on these images have mean 0 and standard deviation 2, as a trained one.
            sample = np.stack([Preprocessor.for_model(net_feed)(img).pixels for img in images[::4][:64]])
            z = net.eval()(model_input(torch.from_numpy(sample), torch.device("cpu"), net_feed.mean, net_feed.std))
            scale = 2.0 / z.std()
            net.disc.fc.weight.mul_(scale)
            net.disc.fc.bias.sub_(z.mean()).mul_(scale)
        path = Path(folder.name) / "official-format-ssp.pth"
        torch.save(net.state_dict(), path)  # srm.kernel + disc.*: read as the official release
        weights.append(str(path))
    cpu = torch.device("cpu")
    rows = []
    for w in weights:
        loaded = load_model(w)
        model = place_model(loaded.model, cpu).eval()
        runs = {p: TorchBackend(model, cpu, p) for p in ("fp32", "bf16")}
        seeds = range(args.seeds) if loaded.feed.input == "patch" else range(1)  # crops do not depend on a seed
        pixels = np.stack(
            [Preprocessor.for_model(loaded.feed, PatchOptions(seed=s))(img).pixels for s in seeds for img in images]
        )
        p = {}
        with torch.inference_mode():
            for name, backend in runs.items():
                out = []
                for i in range(0, len(pixels), args.batch_size):
                    x = model_input(
                        torch.from_numpy(pixels[i : i + args.batch_size]), cpu, loaded.feed.mean, loaded.feed.std
                    )
                    out.append(torch.sigmoid(backend(x).float() / loaded.temperature).numpy().astype(np.float64))
                p[name] = np.concatenate(out)
        delta = np.abs(p["bf16"] - p["fp32"])
        flips = ((p["bf16"] >= loaded.threshold) != (p["fp32"] >= loaded.threshold)).sum()
        near = (np.abs(p["fp32"] - loaded.threshold) < 0.05).mean()
        label = f"{Path(w).parent.name}/{Path(w).name} ({loaded.name}, {loaded.source})"
        rows.append((label, len(delta), delta.max(), delta.mean(), 1000 * flips / len(delta), flips, near, p["fp32"]))
    print(f"\nbf16 autocast against fp32 on the CPU, {len(images)} images from {args.data}, {datetime.date.today()}\n")
    print(
        "| checkpoint | inputs | max abs delta p_fake | mean abs delta p_fake | flipped per 1000 (n) "
        "| within 0.05 of threshold | p_fake range (fp32) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, n, mx, mean, per_k, flips, near, p32 in rows:
        print(
            f"| {label} | {n} | {mx:.2e} | {mean:.2e} | {per_k:.1f} ({flips}) | {near:.1%} | "
            f"{p32.min():.3f}-{p32.max():.3f} |"
        )
    folder.cleanup()


if __name__ == "__main__":
    main()
