"""Write the training-throughput section of BENCHMARKS.md: images/s of a full training step.

One step = forward, cross-entropy, backward and an SGD update, on random 224x224 inputs.
Our networks and timm's same network are measured in the same run, step for step in turns,
so all see the same machine state. CPU always; the GPU too when one is present (bf16
autocast there).

    .venv/bin/python benchmarks/train_throughput.py                 # writes BENCHMARKS.md
    .venv/bin/python benchmarks/train_throughput.py --steps 2 --warmup 1 --batch-size 4 --dry-run
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import res2net
from res2net.bench.quiet import LoadWatch, add_noise_argument
from res2net.bench.report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
# (label, builder): ours in both flavours, and timm's res2net50d, which is the official
# flavour's Res2Net-50-vd (timm's res2net.py: the original release's 'v1b' weights, deep stem
# + avg-pool shortcut).
NETWORKS = {
    "res2net Res2Net50_vd_26w_4s (PaddleClas flavour)": lambda: res2net.create_model(
        "Res2Net50_vd_26w_4s"
    ),
    "res2net res2net50d (official flavour)": lambda: res2net.create_model("res2net50d"),
    "timm res2net50d": lambda: timm.create_model("res2net50d", pretrained=False),
}


def make_step(model, device, batch: int, channels_last: bool):
    """A function that runs one training step of ``model`` and returns its wall seconds."""
    model = model.to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    amp = device.type == "cuda"

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def measure(device: torch.device, batch: int, steps: int, warmup: int, channels_last: bool):
    """Every network built and warmed up, then timed step for step in turns (A, B, C, A, ...),
    so a slow spell of the machine hits all of them alike."""
    runners = {}
    for label, build in NETWORKS.items():
        torch.manual_seed(0)
        runners[label] = make_step(build(), device, batch, channels_last)
        for _ in range(warmup):
            runners[label]()
    secs: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(steps):
        for label, step in runners.items():
            secs[label].append(step())
    rows = []
    for label, times in secs.items():
        median = statistics.median(times)
        rows.append((label, device.type, batch, median, batch / median))
        print(f"{label:<50} {device.type:<5} batch {batch:<4} {batch / median:8.1f} img/s")
    return rows


def section(rows, args) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        "## Training throughput",
        "",
        f"`benchmarks/train_throughput.py`: one SGD training step (forward, loss, backward, "
        f"update) on random 224x224 inputs, median of {args.steps} steps after {args.warmup} "
        f"warm-up steps; {'channels_last' if args.channels_last else 'NCHW'}; bf16 autocast on "
        f"GPU. CPU: {cpu_name()}, {torch.get_num_threads()} threads. GPU: {gpu}. "
        f"torch {torch.__version__}, timm {timm.__version__}.",
        "",
        "| network | device | batch | step (ms) | images/s |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {d} | {b} | {s * 1000:.0f} | {ips:.1f} |" for n, d, b, s, ips in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16, help="CPU batch (GPU uses --gpu-batch)")
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print only; leave BENCHMARKS.md")
    add_noise_argument(ap)
    args = ap.parse_args()
    with LoadWatch() as load:
        rows = measure(
            torch.device("cpu"), args.batch_size, args.steps, args.warmup, args.channels_last
        )
        if torch.cuda.is_available() and not args.no_gpu:
            rows += measure(
                torch.device("cuda"), args.gpu_batch, args.steps, args.warmup, args.channels_last
            )
    text = section(rows, args)
    if args.dry_run:
        print(text)
    else:
        path = write_section(ROOT / "BENCHMARKS.md", "train_throughput", text, load=load,
                             allow_noisy=args.allow_noisy)  # fmt: skip
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
