"""The latency bench's plumbing (no timed assertions: speed lives in BENCHMARKS.md)."""

from __future__ import annotations

from res2net.bench.latency import Measurement, markdown_table, plot, ratios, run_benchmark
from res2net.cli import main


def test_bench_measures_and_tabulates(tmp_path):
    rows = run_benchmark(["Res2Net50_26w_4s"], ["eager", "fused"], [1], warmup=0, iters=1)
    assert [(r.engine, r.batch) for r in rows] == [("eager", 1), ("fused", 1)]
    assert all(r.median_ms > 0 and r.gflops > 8 and r.peak_rss_mib > 0 for r in rows)
    peer = Measurement("Res2Net50_26w_4s", "timm-eager", "fp32", 1, 1e6, 1e6, 1e6, peer=True)
    table = markdown_table([*rows, peer])
    assert table.splitlines()[0].startswith("| Model | Engine | Precision | bs=1 (ms)")
    assert "timm-eager (peer)" in table and table.count("**") == 2  # one fastest, bold
    assert any("vs timm-eager" in line for line in ratios([*rows, peer]))
    assert plot(rows, tmp_path / "latency.png").stat().st_size > 1000


def test_cli_export_needs_calibration_for_int8(capsys):
    assert main(["export", "--model", "Res2Net50_26w_4s", "--int8"]) == 2
    assert "--int8 and --calib go together" in capsys.readouterr().err


def test_limits_give_each_row_its_floor():
    from res2net.bench.latency import limit_lines
    from res2net.bench.limits import Limits, gemm_rate_int8, gemm_rates_fp32

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


def test_engines_are_timed_in_turns():
    """Round-robin timing: engines alternate, each gets exactly ``iters`` timings."""
    from res2net.bench.latency import _Contender, time_round_robin

    calls = []

    def engine(tag):
        return lambda batch: calls.append((tag, len(batch)))

    a = _Contender("a", "fp32", engine("a"), None, {1: [], 4: []})
    b = _Contender("b", "fp32", engine("b"), None, {1: [], 4: []})
    time_round_robin([a, b], [1, 4], iters=20)
    assert all(len(c.times[n]) == 20 for c in (a, b) for n in (1, 4))
    # 20 timed calls in turns of 2 (+1 untimed each): 10 turns each, alternating.
    tags = [tag for tag, batch in calls if batch == 1]
    turns = [tags[i] for i in range(len(tags)) if i == 0 or tags[i] != tags[i - 1]]
    assert turns == ["a", "b"] * 10
