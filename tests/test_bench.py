"""The latency bench's plumbing (no timed assertions: speed lives in BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from conftest import PHOTOS

from res2net.bench.latency import run_benchmark
from res2net.bench.report import Measurement, markdown_table, plot, ratios, to_json
from res2net.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    """A script of benchmarks/ as a module (they are not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_measures_and_tabulates(tmp_path):
    rows = run_benchmark(["Res2Net50_26w_4s"], ["eager", "fused"], [1], warmup=0, iters=1)
    assert [(r.engine, r.batch) for r in rows] == [("eager", 1), ("fused", 1)]
    assert all(r.median_ms > 0 and r.gflops > 8 and r.peak_rss_mib > 0 for r in rows)
    peer = Measurement("Res2Net50_26w_4s", "timm-eager", "fp32", 1, 1e6, 1e6, 1e6, peer=True)
    table = markdown_table([*rows, peer])
    assert table.splitlines()[0].startswith("| Model | Engine | Precision | bs=1 (ms)")
    assert "timm-eager (peer)" in table and table.count("**") == 2  # one fastest, bold
    assert any("vs timm-eager" in line for line in ratios([*rows, peer]))
    written = plot(rows, tmp_path / "latency.png")
    assert [p.name for p in written] == ["latency.png", "latency_batch.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_cli_export_needs_calibration_for_int8(capsys):
    assert main(["export", "--model", "Res2Net50_26w_4s", "--int8"]) == 2
    assert "--int8 and --calib go together" in capsys.readouterr().err


def test_limits_give_each_row_its_floor():
    from res2net.bench.limits import Limits, gemm_rate_int8, gemm_rates_fp32
    from res2net.bench.report import limit_lines

    limits = Limits(fp32_gflops=100.0, fp32_source="test", int8_gops=200.0, rates={"test": 100.0})
    rows = run_benchmark(["Res2Net50_26w_4s"], ["eager"], [1, 2], warmup=0, iters=1, limits=limits)
    gflops = rows[0].gflops
    # 8.5 GFLOPs per image at 100 GFLOP/s: 85 ms per image, twice that for two.
    assert [r.limit_ms for r in rows] == [round(10 * gflops, 2), round(20 * gflops, 2)]
    assert limits.floor_ms(gflops, 1, "int8") == 1e3 * gflops / 200.0
    assert limits.floor_ms(gflops, 1, "fp16") is None
    lines = limit_lines(rows, limits)
    assert lines[0].startswith("Limit measured in this run: FP32 100 GFLOP/s (test), INT8 200")
    assert any(line.startswith("Res2Net50_26w_4s bs=1 fp32: floor") for line in lines)
    rates = gemm_rates_fp32(n=128, repeats=1)
    assert rates and all(rate > 0 for rate in rates.values())
    assert gemm_rate_int8(n=128, repeats=1) > 0
    limits.bf16_gflops = 400.0
    assert limits.floor_ms(gflops, 2, "bf16") == 1e3 * gflops * 2 / 400.0
    assert ", BF16 400 GFLOP/s, INT8 200 GOP/s" in limit_lines(rows, limits)[0]


def test_openvino_kernels_give_the_floor_of_each_precision():
    """OpenVINO's own MatMul at f32, bf16 (where native) and int8; int8 runs as an integer
    GEMM (OpenVINO's runtime graph names the kernel), not FP32 in disguise."""
    import openvino as ov

    from res2net.bench.limits import cpu_isa, openvino_gemm_rates, openvino_matmuls
    from res2net.deploy.runtimes import openvino_config, openvino_runs_bf16

    rates = openvino_gemm_rates(n=128, repeats=1)
    kinds = {name.rsplit(" ", 1)[1] for name in rates}
    assert kinds == ({"f32", "bf16", "int8"} if openvino_runs_bf16() else {"f32", "int8"})
    assert all(rate > 0 for rate in rates.values())
    expected = {"f32": "f32", "bf16": "bf16", "int8": "u8"}  # int8 GEMM: u8 activations
    for label, model, precision in openvino_matmuls(64):
        compiled = ov.Core().compile_model(model, "CPU", openvino_config(None, precision))
        gemms = [
            op.get_rt_info()["runtimePrecision"].astype(str)
            for op in compiled.get_runtime_model().get_ordered_ops()
            if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")
        ]
        assert gemms == [expected[label]], label
    assert cpu_isa({"avx2", "avx512f", "avx512_vnni", "amx_bf16", "sse2"}) == (
        "AVX2, AVX-512, AVX512-VNNI, AMX-BF16"
    )
    assert cpu_isa(set()) == "no AVX2"


def test_engines_are_timed_in_turns():
    """Round-robin timing: engines alternate, each gets exactly ``iters`` timings."""
    from res2net.bench.timing import Contender, time_round_robin

    calls = []

    def engine(tag):
        return lambda batch: calls.append((tag, len(batch)))

    a = Contender("a", "fp32", engine("a"), None, {1: [], 4: []})
    b = Contender("b", "fp32", engine("b"), None, {1: [], 4: []})
    time_round_robin([a, b], [1, 4], iters=20)
    assert all(len(c.times[n]) == 20 for c in (a, b) for n in (1, 4))
    # 20 timed calls in turns of 2 (+1 untimed each): 10 turns each, alternating.
    tags = [tag for tag, batch in calls if batch == 1]
    turns = [tags[i] for i in range(len(tags)) if i == 0 or tags[i] != tags[i - 1]]
    assert turns == ["a", "b"] * 10

    # End to end: every timed call first makes its input, in the same turns; the e2e time
    # of each call contains its model time, so no e2e figure can come out below it.
    calls.clear()
    made = []

    def inputs(batch):
        return lambda: made.append(batch) or np.zeros((batch, 3, 8, 8), np.float32)

    for c in (a, b):
        c.times = {1: []}
    time_round_robin([a, b], [1], iters=20, inputs=inputs)
    assert len(made) == 40 and all(len(c.e2e[1]) == 20 for c in (a, b))
    assert all(e >= m for c in (a, b) for e, m in zip(c.e2e[1], c.times[1], strict=True))
    tags = [tag for tag, _ in calls]
    turns = [tags[i] for i in range(len(tags)) if i == 0 or tags[i] != tags[i - 1]]
    assert turns == ["a", "b"] * 10


def test_what_is_measured_where():
    """CPU: FP32 everywhere, BF16 in PyTorch, INT8 in the two quantized engines, the peers in
    FP32. GPU: the PyTorch engines and timm eager at every precision, nothing CPU-only."""
    runs = _script("peers").runs  # ours and the peers

    assert runs("openvino", "fp32", "cpu") and runs("openvino", "int8", "cpu")
    assert runs("fused", "bf16", "cpu") and not runs("fused", "fp16", "cpu")
    assert not runs("fused", "int8", "cpu") and not runs("onnxruntime", "bf16", "cpu")
    assert runs("paddle-inference", "fp32", "cpu") and not runs("paddle-inference", "bf16", "cpu")
    assert runs("timm-eager", "bf16", "cpu") and runs("timm-eager", "fp16", "cuda")
    assert runs("cudagraph", "fp16", "cuda") and not runs("openvino-plain", "fp32", "cuda")
    assert not runs("openvino", "int8", "cuda") and not runs("tensorrt", "bf16", "cuda")
    # OpenVINO BF16 (ours and the plain conversion) where OpenVINO reports native BF16.
    from res2net.deploy.runtimes import openvino_runs_bf16

    assert runs("openvino", "bf16", "cpu") == openvino_runs_bf16()
    assert runs("openvino-plain", "bf16", "cpu") == openvino_runs_bf16()


def test_bench_runs_bf16_beside_the_peer_at_the_same_precision(capsys):
    rows = run_benchmark(
        ["Res2Net50_26w_4s"], ["fused", "onnxruntime"], [1], ["bf16"], warmup=0, iters=1,
        photos=PHOTOS,
    )  # fmt: skip
    assert [(r.engine, r.precision, r.device) for r in rows] == [("fused", "bf16", "cpu")]
    assert "skip onnxruntime bf16: not measured on cpu" in capsys.readouterr().err
    # What BF16 costs, against eager FP32 on the test photos: some logit difference, small.
    assert 0 <= rows[0].top1_agreement <= 1 and 0 < rows[0].max_rel_diff < 0.1
    assert "| vs FP32: top-1 agree / max rel diff |" in markdown_table(rows).splitlines()[0]
    peer = Measurement("Res2Net50_26w_4s", "timm-eager", "bf16", 1, 1e6, 1e6, 1e6, peer=True)
    assert ratios([*rows, peer])[0].startswith("Res2Net50_26w_4s bs=1 bf16: fused")
    # No FP32 peer is compared with a BF16 row.
    fp32_peer = Measurement("Res2Net50_26w_4s", "timm-eager", "fp32", 1, 1, 1, 1, peer=True)
    assert ratios([*rows, fp32_peer]) == []


def test_gpu_rows_are_tabulated_with_card_memory():
    rows = [
        Measurement("Res2Net50_vd_26w_4s", "cudagraph", "fp16", 1, 0.734, 0.75, 0.734,
                    device="cuda", peak_gpu_mib=210.5),
        Measurement("Res2Net50_vd_26w_4s", "timm-eager", "fp16", 1, 4.21, 4.3, 4.21,
                    peer=True, device="cuda", peak_gpu_mib=190.0),
    ]  # fmt: skip
    table = markdown_table(rows)
    assert "Peak GPU memory (MiB)" in table and "| **0.73** | 210 |" in table
    assert ratios(rows) == [
        "Res2Net50_vd_26w_4s bs=1 fp16: cudagraph 0.734 ms vs timm-eager 4.210 ms = 5.74x faster"
    ]


def test_gpu_script_checks_and_reports_on_the_cpu(tmp_path, paddle_reference):
    """benchmarks/gpu_latency.py is run once on a lent GPU machine; its plumbing (checks
    against CPU eager, the JSON document, the section) is exercised here on the CPU."""
    import json

    script = _script("gpu_latency")

    # The PaddleClas-reference weights of the parity tests (BatchNorm fitted to the photos).
    weights_dir = paddle_reference("Res2Net50_26w_4s")[0].parent
    checks = script.check_model("Res2Net50_26w_4s", "cpu", ["fused"], ["fp32", "fp16"], weights_dir)
    assert [(c["engine"], c["precision"], c["ok"]) for c in checks] == [
        ("cpu-eager (reference)", "fp32", True),
        ("fused", "fp32", True),
    ]
    assert checks[0]["image_dependence"] >= 0.1  # the outputs depend on the photo
    assert 0 < checks[1]["rel_error"] <= 1e-4  # folded BN: not bit-identical, but close
    same = np.tile(np.linspace(-1, 1, 10, dtype=np.float32), (6, 1))
    assert script.image_dependence(same) < 1e-6  # a network that ignores the image
    rows = run_benchmark(["Res2Net50_26w_4s"], ["fused"], [1], warmup=0, iters=1)
    document = {
        "environment": script.environment("cpu"),
        "warmup": 0,
        "iters": 1,
        "checks": checks,
        "rows": json.loads(to_json(rows)),
        "errors": ["Res2Net200_vd_26w_4s: RuntimeError: out of memory"],
    }
    script.write(tmp_path, document)
    text = (tmp_path / "gpu_section.md").read_text()
    assert "Correctness on the card (2 checks" in text and "all passed" in text
    assert "| Res2Net50_26w_4s | fused | fp32 |" in text
    assert "- not measured: Res2Net200_vd_26w_4s: RuntimeError: out of memory" in text
    assert json.loads((tmp_path / "gpu_latency.json").read_text())["checks"] == checks


def test_sections_record_their_machine_in_the_generated_header(tmp_path):
    from res2net.bench.report import UNRECORDED, cpu_isa, write_section

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("<!-- old:begin -->\nold figures\n<!-- old:end -->\n")
    write_section(path, "b", "B figures", machine="Card X, 2026-11-29")
    write_section(path, "a", "A figures")
    write_section(path, "a", "A figures again")
    text = path.read_text()
    assert text.startswith("<!-- header:begin -->\n# Benchmarks\n")
    assert text.index("machines:begin") < text.index("old:begin") < text.index("b:begin")
    assert "- `b`: Card X, 2026-11-29" in text and f"- `old`: {UNRECORDED}" in text
    assert f"({cpu_isa()})" in text.split("- `a`: ")[1].splitlines()[0]
    assert text.count("A figures") == 1 and text.count("<!-- header:begin -->") == 1
    path.write_text(text.replace("<!-- old:begin -->\nold figures\n<!-- old:end -->\n", ""))
    write_section(path, "a", "A figures, third run")  # a removed section's machine goes too
    assert "- `old`:" not in path.read_text() and "- `b`: Card X" in path.read_text()
    flags = tmp_path / "cpuinfo"
    flags.write_text("flags\t: fpu avx2 avx512f avx512_vnni amx_tile\n")
    assert cpu_isa(flags) == "AVX-512 + VNNI + AMX"
    flags.write_text("flags\t: fpu avx2 fma\n")
    assert cpu_isa(flags) == "AVX2"


def test_a_self_timing_peer_takes_turns_with_our_engines():
    """A peer in another process times itself ("time N calls"): it alternates with our
    engines turn by turn, not after them (issue 20: interleaved across processes)."""
    from res2net.bench.timing import Contender, time_round_robin

    turns = []

    class Remote:
        def time_calls(self, batch, warmup, n):
            turns.append(("peer", batch, warmup, n))
            return [1.0] * n

    ours = Contender("a", "fp32", lambda batch: turns.append(("a", len(batch))), None, {2: []})
    peer = Contender("peer", "fp32", Remote(), None, {2: []}, peer=True)
    time_round_robin([ours, peer], [2], iters=20)
    assert len(peer.times[2]) == 20 and len(ours.times[2]) == 20
    who = [t[0] for t in turns]
    changes = [who[i] for i in range(len(who)) if i == 0 or who[i] != who[i - 1]]
    assert changes == ["a", "peer"] * 10
    assert {t[1:] for t in turns if t[0] == "peer"} == {(2, 1, 2)}  # 1 untimed + 2 timed


def test_paddle_inference_peer_answers_with_paddles_logits(vd50_with_reference, paddle_reference):
    """The Paddle Inference peer process (PaddleClas's interpreter) answers the protocol:
    its logits on a photo, with the reference weights, are ours (eager, itself checked
    against PaddleClas's dygraph logits); its timing and memory requests answer."""
    import pytest
    from conftest import assert_logits_match

    peers = _script("peers")
    if not Path(peers.reference_python()).exists():
        pytest.skip("no PaddleClas interpreter (.venv-ref)")
    model, batch, eager = vd50_with_reference
    weights, _ = paddle_reference("Res2Net50_vd_26w_4s")
    peer = peers.PaddleInference("Res2Net50_vd_26w_4s", weights=str(weights))
    try:
        assert_logits_match(peer(batch[:1]), eager[:1])
        times = peer.time_calls(2, 1, 3)
        assert len(times) == 3 and all(t > 0 for t in times)
        assert peer.peak_rss_mib() > 100
    finally:
        peer.close()
    assert peer._proc.returncode == 0


def test_cli_bench_points_to_the_peer_script_and_needs_photos_to_decode(capsys):
    """The peers left the package: --compare says where they are; decoding needs photos
    (the library reads no test folder of its own)."""
    assert main(["bench", "--compare"]) == 2
    err = capsys.readouterr().err
    assert "error: --compare:" in err and "python benchmarks/latency.py" in err
    assert main(["bench", "--with-preprocess", "--engine", "eager"]) == 2
    assert "--with-preprocess decodes real photos: give --photos" in capsys.readouterr().err
