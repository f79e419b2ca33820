"""What this machine allows: the arithmetic rate of a large matrix product, measured now.

A network cannot run faster than its arithmetic done at the rate of the best large matrix
product the CPU manages (a big GEMM is the most favourable shape there is), so
``counted FLOPs / GEMM rate`` is a floor on latency, and ``floor / measured`` says how much
of the machine an engine uses. Measured in the same run as the latencies, because a
published peak says little about a shared 2-core VM (its clocks, its neighbours).

* FP32: the best of NumPy's and PyTorch's float32 ``matmul`` (different BLAS libraries run
  at different speeds on a given CPU, e.g. MKL vs OpenBLAS on AMD).
* INT8: ONNX Runtime's ``MatMulInteger`` with uint8 x int8 operands (its integer GEMM,
  which uses VNNI where the CPU has it and ``vpmaddubsw`` otherwise).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Limits:
    """Measured arithmetic rates, in GFLOP/s (FP32) and GOP/s (INT8; None if unmeasured)."""

    fp32_gflops: float
    fp32_source: str
    int8_gops: float | None = None
    rates: dict[str, float] = field(default_factory=dict)

    def floor_ms(self, gflops: float, batch: int, precision: str = "fp32") -> float | None:
        """Least time for ``batch`` images of ``gflops`` each at the measured rate."""
        rate = self.fp32_gflops if precision == "fp32" else self.int8_gops
        if precision not in ("fp32", "int8") or not rate:
            return None
        return 1e3 * gflops * batch / rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    from res2net.bench.latency import time_calls

    # Two warm-up calls: thread pools started, pages touched.
    return statistics.median(time_calls(fn, 2, repeats)) / 1e3


def gemm_rates_fp32(n: int = 2048, repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of an n x n x n float32 matrix product, per library available here."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    rates = {f"numpy {np.__version__}": flops / _median_seconds(lambda: a @ b, repeats) / 1e9}
    try:
        import torch
    except ImportError:
        return rates
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.inference_mode():
        seconds = _median_seconds(lambda: ta @ tb, repeats)
    rates[f"torch {torch.__version__}"] = flops / seconds / 1e9
    return rates


def gemm_rate_int8(n: int = 2048, repeats: int = 7) -> float | None:
    """GOP/s of an n x n x n uint8 x int8 product in ONNX Runtime (None without it)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        from res2net.deploy.runtimes import cpu_threads
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-64, 64, (n, n), dtype=np.int8), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "W"], ["Y"])],
        "int8_gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    return 2.0 * n**3 / _median_seconds(lambda: session.run(None, feed), repeats) / 1e9


def measure_limits(n: int = 3072, repeats: int = 7) -> Limits:
    """The best FP32 and INT8 GEMM rates measured now (a few seconds)."""
    rates = gemm_rates_fp32(n, repeats)
    source, best = max(rates.items(), key=lambda item: item[1])
    int8 = gemm_rate_int8(n, repeats)
    if int8 is not None:
        rates["onnxruntime MatMulInteger u8s8"] = int8
    rounded = {name: round(rate, 1) for name, rate in rates.items()}
    return Limits(round(best, 1), source, None if int8 is None else round(int8, 1), rounded)
