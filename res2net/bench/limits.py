"""What this machine allows: the arithmetic rate of a large matrix product, measured now.

A network cannot run faster than its arithmetic done at the rate of the best large matrix
product the CPU manages (a big GEMM is the most favourable shape there is), so
``counted FLOPs / GEMM rate`` is a floor on latency, and ``floor / measured`` says how much
of the machine an engine uses. Measured in the same run as the latencies, because a
published peak says little about a shared 2-core VM (its clocks, its neighbours).

Each precision's floor comes from the fastest kernel this CPU has for it, because BLAS
libraries do not always reach the rate of the engines' own kernels (on an AMX CPU,
PyTorch's BF16 GEMM ran below OpenVINO's BF16 network):

* FP32: NumPy's and PyTorch's float32 ``matmul`` and OpenVINO's ``MatMul`` compiled at f32.
* BF16: PyTorch's bfloat16 ``matmul`` and OpenVINO's ``MatMul`` compiled at bf16 (AMX or
  AVX512-BF16; only where OpenVINO reports native BF16).
* INT8: ONNX Runtime's ``MatMulInteger`` (uint8 x int8) and OpenVINO's ``MatMul`` between
  two ``FakeQuantize`` (which OpenVINO runs as an integer GEMM: VNNI or AMX-INT8 where the
  CPU has them, ``vpmaddubsw`` otherwise).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Limits:
    """Measured arithmetic rates: GFLOP/s (FP32, BF16), GOP/s (INT8); None if unmeasured."""

    fp32_gflops: float
    fp32_source: str
    int8_gops: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    bf16_gflops: float | None = None
    # The CPU's vector/matrix extensions that set these rates (see cpu_isa).
    isa: str = ""

    def rate(self, precision: str) -> float | None:
        """The floor's rate of ``precision`` (None where unmeasured)."""
        return {"fp32": self.fp32_gflops, "bf16": self.bf16_gflops, "int8": self.int8_gops}.get(
            precision
        )

    def floor_ms(self, gflops: float, batch: int, precision: str = "fp32") -> float | None:
        """Least time for ``batch`` images of ``gflops`` each at the measured rate."""
        rate = self.rate(precision)
        return 1e3 * gflops * batch / rate if rate else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# /proc/cpuinfo flag -> name, for the extensions that decide FP32/BF16/INT8 rates.
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx_vnni": "AVX-VNNI",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}


def cpu_isa(flags: set[str] | None = None) -> str:
    """The CPU's relevant extensions, e.g. ``"AVX2, AVX-512, AVX512-VNNI, AVX512-BF16"``."""
    from res2net.deploy.int8 import cpu_flags

    flags = cpu_flags() if flags is None else flags
    names = [name for flag, name in ISA_FLAGS.items() if flag in flags]
    return ", ".join(names) or "no AVX2"


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    from res2net.bench.timing import time_calls

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


def openvino_matmuls(n: int) -> list[tuple[str, Any, str]]:
    """(label, ``openvino.Model``, precision) of an n x n x n ``MatMul`` at f32, bf16 (where
    OpenVINO runs it natively) and int8: both operands through ``FakeQuantize``, the form
    OpenVINO's low-precision transformations run as an integer GEMM."""
    import openvino as ov
    import openvino.opset13 as ops

    from res2net.deploy.runtimes import openvino_runs_bf16

    rng = np.random.default_rng(0)
    weight = ops.constant(rng.standard_normal((n, n), dtype=np.float32))
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    # transpose_b: weights laid out [N, K], as OpenVINO's FullyConnected keeps them.
    float_model = ov.Model([ops.matmul(x, weight, False, True)], [x])

    def quantized(node: Any, low: float, high: float, levels: int) -> Any:
        lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
        return ops.fake_quantize(node, lo, hi, lo, hi, levels)

    qx, qw = quantized(x, 0.0, 4.0, 256), quantized(weight, -4.0, 4.0, 255)
    int8_model = ov.Model([ops.matmul(qx, qw, False, True)], [x])
    plans = [("f32", float_model, "fp32"), ("int8", int8_model, "int8")]
    if openvino_runs_bf16():
        plans.insert(1, ("bf16", float_model, "bf16"))
    return plans


def openvino_gemm_rates(n: int = 2048, repeats: int = 7) -> dict[str, float]:
    """G(FL)OP/s of OpenVINO's CPU ``MatMul`` (:func:`openvino_matmuls`); empty without it."""
    try:
        import openvino as ov

        from res2net.deploy.runtimes import openvino_config
    except ImportError:
        return {}
    feed = np.abs(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
    version, rates = ov.__version__.split("-")[0], {}
    for label, model, precision in openvino_matmuls(n):
        compiled = ov.Core().compile_model(model, "CPU", openvino_config("LATENCY", precision))
        request = compiled.create_infer_request()
        seconds = _median_seconds(lambda r=request: r.infer([feed]), repeats)
        rates[f"openvino {version} MatMul {label}"] = 2.0 * n**3 / seconds / 1e9
    return rates


def gemm_rate_bf16_torch(n: int = 2048, repeats: int = 7) -> float | None:
    """GFLOP/s of PyTorch's bfloat16 n x n x n ``matmul`` (None without PyTorch)."""
    try:
        import torch
    except ImportError:
        return None
    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    with torch.inference_mode():
        return 2.0 * n**3 / _median_seconds(lambda: a @ b, repeats) / 1e9


def _best(rates: dict[str, float], kind: str) -> tuple[str, float] | None:
    chosen = {name: rate for name, rate in rates.items() if kind in name}
    return max(chosen.items(), key=lambda item: item[1]) if chosen else None


def measure_limits(n: int = 3072, repeats: int = 7) -> Limits:
    """The best FP32, BF16 and INT8 matrix-product rates measured now (some seconds)."""
    from res2net.deploy.runtimes import openvino_runs_bf16

    rates = {f"{name} f32": rate for name, rate in gemm_rates_fp32(n, repeats).items()}
    ort_int8 = gemm_rate_int8(n, repeats)
    if ort_int8 is not None:
        rates["onnxruntime MatMulInteger u8s8 int8"] = ort_int8
    if openvino_runs_bf16():  # emulated BF16 elsewhere: no floor worth printing
        bf16 = gemm_rate_bf16_torch(n, repeats)
        if bf16 is not None:
            rates[f"torch {_torch_version()} bf16"] = bf16
    rates.update(openvino_gemm_rates(n, repeats))
    rounded = {name: round(rate, 1) for name, rate in rates.items()}
    fp32_source, fp32 = _best(rounded, " f32")
    bf16 = _best(rounded, " bf16")
    int8 = _best(rounded, " int8")
    return Limits(fp32, fp32_source, int8 and int8[1], rounded, bf16 and bf16[1], isa=cpu_isa())


def _torch_version() -> str:
    import torch

    return torch.__version__
