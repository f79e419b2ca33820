"""GPU correctness and latency of the five Res2Net networks on one card.

Made to be run once on a lent device machine (no network there; it has torch, timm and
numpy), then turned into the "Deployment latency (GPU)" section of BENCHMARKS.md here:

    # on the device machine, from the repository root (no install needed):
    PYTHONPATH=$PWD python benchmarks/gpu_latency.py --out "$OUT"
    # back here, with the JSON it wrote:
    .venv/bin/python benchmarks/gpu_latency.py --from-json PATH/gpu_latency.json

The device run does two things and writes ``gpu_latency.json`` (and the section, as
Markdown) after each, so a run cut short still brings back what it finished:

1. Correctness: each network on the six test photos, with the PaddleClas-reference weights
   of the parity tests when ``--reference-weights DIR`` holds ``NAME.pdparams`` (make them
   here with tests/reference/paddle_model.py and copy DIR along), else seeded random
   weights (BatchNorm statistics too). The first check of each network is that CPU eager's
   logits depend on the image (>= 10% of the largest logit), or no comparison could fail.
   CPU eager FP32 is the reference (the CPU tests check it against PaddleClas's own code).
   Every GPU engine in FP32 must agree within 1e-4 of the largest logit with the same
   top-5; FP16 and BF16 must keep the top-1 class, and their largest relative error is
   recorded.
2. Latency: as ``benchmarks/latency.py --device cuda`` (``res2net bench`` with the peers)
   over the five networks, engines ``eager`` and ``cudagraph`` (plus ``compile`` with
   ``--compile``, ``tensorrt`` where torch_tensorrt is installed), FP32 (IEEE, TF32 off),
   FP16 and BF16, batch 1/4/8, beside timm eager on the same card at the same precision
   (``--e2e`` adds the times with decoding, preprocessing and copies, which are CPU-bound
   and take minutes more).

``--device cpu`` runs the same script on the CPU (eager and fused), to check it here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from res2net.bench.latency import run_benchmark  # noqa: E402
from res2net.bench.quiet import LoadWatch, add_noise_argument  # noqa: E402
from res2net.bench.report import (  # noqa: E402
    Measurement,
    cpu_name,
    markdown_table,
    plot,
    ratios,
    to_json,
    write_section,
)

MODELS = [
    "Res2Net50_26w_4s",
    "Res2Net50_vd_26w_4s",
    "Res2Net50_14w_8s",
    "Res2Net101_vd_26w_4s",
    "Res2Net200_vd_26w_4s",
]
PHOTOS = sorted((ROOT / "tests" / "data" / "images").glob("*.[pj][np]g"))


def seeded_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The network with random weights and random BatchNorm statistics (eval mode)."""
    from res2net.builder import create_model

    torch.manual_seed(seed)
    model = create_model(name).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def photo_batch(name: str) -> np.ndarray:
    """The six test photos, preprocessed as the model's entry says (N x 3 x 224 x 224)."""
    from res2net.data.transforms import preprocess
    from res2net.models.registry import get_entry

    cfg = get_entry(name).preprocess
    return np.stack([preprocess(path, cfg).numpy() for path in PHOTOS])


def reference_model(name: str, weights_dir: Path | None) -> torch.nn.Module:
    """PaddleClas-reference weights when ``weights_dir`` holds ``NAME.pdparams`` (made here by
    tests/reference/paddle_model.py: PaddleClas's network with BatchNorm fitted to the test
    photos, the weights the parity tests use; copy the folder to the device machine), else
    :func:`seeded_model`."""
    from res2net.builder import create_model

    path = weights_dir / f"{name}.pdparams" if weights_dir else None
    if path is not None and path.exists():
        return create_model(name, pretrained=str(path)).eval()
    return seeded_model(name)


def image_dependence(logits: np.ndarray) -> float:
    """How far the photos' logits are from their mean, relative to the largest logit: near
    0 when a network answers the same whatever the image (then no comparison can fail)."""
    return float(np.abs(logits - logits.mean(0)).max() / np.abs(logits).max())


def check_model(
    name: str,
    device: str,
    engines: list[str],
    precisions: list[str],
    weights_dir: Path | None = None,
) -> list[dict]:
    """One record per engine x precision: error against CPU eager FP32, and the verdict; the
    first record says whether the reference's outputs depend on the image (>= 10%)."""
    from res2net.deploy.runtimes import create_runtime, engine_precisions

    model = reference_model(name, weights_dir)
    batch = photo_batch(name)
    reference = create_runtime(model, "eager")(batch)
    scale = float(np.abs(reference).max())
    top5 = np.argsort(-reference, axis=1)[:, :5]
    spread = image_dependence(reference)
    records = [{"model": name, "engine": "cpu-eager (reference)", "precision": "fp32",
                "image_dependence": spread, "ok": spread >= 0.1}]  # fmt: skip
    for engine in engines:
        for precision in precisions:
            if precision not in engine_precisions(engine, device):
                continue
            record = {"model": name, "engine": engine, "precision": precision}
            try:
                out = create_runtime(model, engine, device=device, precision=precision)(batch)
                rel = float(np.abs(out - reference).max()) / scale
                same_top5 = bool((np.argsort(-out, axis=1)[:, :5] == top5).all())
                same_top1 = bool((out.argmax(1) == reference.argmax(1)).all())
                # FP32 as the CPU tests demand; FP16/BF16 keep about 3 and 2 digits.
                ok = (rel <= 1e-4 and same_top5) if precision == "fp32" else same_top1
                record.update(rel_error=rel, same_top5=same_top5, same_top1=same_top1, ok=ok)
            except Exception as exc:  # record and go on: one engine must not end the run
                record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            records.append(record)
    return records


def environment(device: str) -> dict:
    info = {
        "date": str(datetime.date.today()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["card"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        info["timm"] = None
    return info


def section(document: dict) -> str:
    """The Markdown of the GPU section from a ``gpu_latency.json`` document."""
    env = document["environment"]
    rows = [Measurement(**row) for row in document.get("rows", [])]
    checks = document.get("checks", [])
    where = env.get("card") or env["cpu"]
    lines = [
        "## Deployment latency (GPU)",
        "",
        f"Measured {env['date']} on {where} (torch {env['torch']}, CUDA {env.get('cuda')}, "
        f"cuDNN {env.get('cudnn')}, timm {env.get('timm')}) by "
        "`python benchmarks/gpu_latency.py` (`res2net bench --device cuda --compare`): random "
        f"224x224 input already on the card, {document['warmup']} warm-up runs, median of "
        f"{document['iters']}, each call synchronized; bold = fastest of our engines; `e2e` "
        "(with `--e2e`) = with decoding, preprocessing and the copies to and from the card. "
        "FP32 is IEEE FP32 "
        "(TF32 off). `cudagraph` = BN folded, branches grouped, channels_last, replayed as one "
        "CUDA graph per batch size.",
        "",
    ]
    if checks:
        bad = [c for c in checks if not c.get("ok")]
        fp32 = [c["rel_error"] for c in checks if c["precision"] == "fp32" and "rel_error" in c]
        low = [c["rel_error"] for c in checks if c["precision"] != "fp32" and "rel_error" in c]
        lines.append(
            f"Correctness on the card ({len(checks)} checks, seeded random weights, the six "
            "test photos, against CPU eager FP32): "
            + (
                "all passed"
                if not bad
                else "FAILED: "
                + "; ".join(
                    f"{c['model']} {c['engine']} {c['precision']}: "
                    f"{c.get('error') or c.get('rel_error')}"
                    for c in bad
                )
            )
            + (f"; FP32 worst relative error {max(fp32):.1e}" if fp32 else "")
            + (f"; FP16/BF16 worst {max(low):.1e}, top-1 kept" if low else "")
            + "."
        )
        lines.append("")
    if rows:
        lines += [markdown_table(rows), "", *[f"- {line}" for line in ratios(rows)]]
    for error in document.get("errors", []):
        lines.append(f"- not measured: {error}")
    return "\n".join(lines)


def write(out: Path, document: dict) -> None:
    """The JSON document and its Markdown section, rewritten after each step."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_latency.json").write_text(json.dumps(document, indent=2))
    (out / "gpu_section.md").write_text(section(document) + "\n")


def device_run(args: argparse.Namespace) -> int:
    from res2net.deploy.runtimes import available_engines

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {device}: no CUDA GPU is usable here", file=sys.stderr)
        return 2
    engines = ["eager", "cudagraph"] if device.startswith("cuda") else ["eager", "fused"]
    if args.compile:
        engines.append("compile")
    if "tensorrt" in available_engines(device):
        engines.append("tensorrt")
    document = {
        "environment": environment(device),
        "warmup": args.warmup,
        "iters": args.iters,
        "checks": [],
        "rows": [],
        "errors": [],
    }
    out = Path(args.out)
    started = time.perf_counter()
    for name in args.models:
        document["checks"] += check_model(
            name, device, engines, args.precisions, args.reference_weights
        )
        write(out, document)
        print(f"[{time.perf_counter() - started:5.0f} s] checked {name}", file=sys.stderr)
    from peers import PEERS  # benchmarks/peers.py, beside this script: timm eager on a GPU

    with LoadWatch() as load:
        time_models(args, engines, PEERS, document, started)
    document["load"] = load.record()
    write(out, document)
    print(section(document))
    failed = [c for c in document["checks"] if not c["ok"]]
    return 1 if failed or document["errors"] else 0


def time_models(args, engines, peers, document: dict, started: float) -> None:
    """Time every model of ``args`` into ``document``'s rows, saving after each."""
    device, out = args.device, Path(args.out)
    for name in args.models:
        try:
            rows = run_benchmark(
                [name], engines, args.batch_sizes, args.precisions, peers=peers,
                with_preprocess=args.e2e, photos=PHOTOS, warmup=args.warmup, iters=args.iters,
                device=device,
            )  # fmt: skip
            document["rows"] += json.loads(to_json(rows))
        except Exception as exc:  # keep the other networks' figures
            traceback.print_exc()
            document["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
        write(out, document)
        print(f"[{time.perf_counter() - started:5.0f} s] timed {name}", file=sys.stderr)


def from_json(path: Path, allow_noisy: bool = False) -> int:
    """Put a device run's results into BENCHMARKS.md (and docs/gpu_latency.png)."""
    document = json.loads(path.read_text())
    rows = [Measurement(**row) for row in document.get("rows", [])]
    env = document["environment"]
    if rows:  # the card of the run, not of this machine
        plot(rows, ROOT / "docs" / "gpu_latency.png", where=f"{env.get('card')}, {env['date']}")
    text = section(document)
    if rows:
        text += "\n\n![GPU latency](docs/gpu_latency.png)"
        text += "\n\n![GPU latency per image vs batch size](docs/gpu_latency_batch.png)"
    where = f"{env.get('card')} (host: {env.get('cpu')}), {env['date']}"
    # The load the device run sampled on its own host (none recorded: refused as noisy).
    load = LoadWatch.from_record(document.get("load"))
    bench = write_section(ROOT / "BENCHMARKS.md", "gpu-latency", text, machine=where, load=load,
                          allow_noisy=allow_noisy)  # fmt: skip
    print(f"updated {bench}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-json", type=Path, help="write BENCHMARKS.md from a device run")
    ap.add_argument(
        "--reference-weights",
        type=Path,
        help="folder of NAME.pdparams from tests/reference/paddle_model.py (default: seeded)",
    )
    ap.add_argument("--out", default="gpu-results", help="folder for the JSON and Markdown")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", type=lambda s: s.split(","), default=MODELS)
    ap.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "fp16", "bf16"])
    ap.add_argument("--batch-sizes", type=lambda s: [int(b) for b in s.split(",")],
                    default=[1, 4, 8])  # fmt: skip
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to build)")
    ap.add_argument(
        "--e2e",
        action="store_true",
        help="also time decoding + preprocessing + copies (CPU-bound, minutes more)",
    )
    add_noise_argument(ap)
    args = ap.parse_args()
    if args.from_json:
        return from_json(args.from_json, args.allow_noisy)
    return device_run(args)


if __name__ == "__main__":
    sys.exit(main())
