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
