"""The engines and export formats as data: one place for every fact about them.

Everything else reads these tables: :func:`res2net.deploy.runtimes.create_runtime` (which
class, which precisions, which devices), :func:`res2net.deploy.export.load_exported` (which
engine reads which file), the CLI (its choices and help) and the bench (what it measures,
INT8 included). This module imports neither torch nor any engine library, so the CLI can
list the formats in ``--help`` without loading them.

Precisions: the PyTorch engines run ``fp32``, ``bf16`` and, on a GPU, ``fp16``; OpenVINO
runs ``fp32``, and ``bf16`` only on CPUs with native BF16 (AVX512-BF16 or AMX-BF16: its
CPU plugin reports ``BF16`` in ``OPTIMIZATION_CAPABILITIES``); ONNX Runtime and ExecuTorch
run ``fp32``. INT8 needs calibration images: the engines with an ``int8_format`` run it
from a file quantized as :func:`res2net.deploy.export.export_model` writes it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FormatSpec:
    """An export format: file suffix, the engine that runs it by default, INT8 toolkit."""

    name: str
    suffix: str
    engine: str
    # The toolkit that quantizes this format to INT8 (written to the metadata), or None.
    quantizer: str | None = None


FORMAT_SPECS = (
    FormatSpec("onnx", ".onnx", "onnxruntime", "onnxruntime"),
    FormatSpec("openvino", ".xml", "openvino", "nncf"),
    # TorchScript is deprecated in PyTorch but still what many C++ deployments load.
    FormatSpec("torchscript", ".pt", "eager"),
    FormatSpec("exported-program", ".pt2", "eager"),
    FormatSpec("executorch", ".pte", "executorch", "pt2e-xnnpack"),
)
FORMATS: dict[str, str] = {f.name: f.suffix for f in FORMAT_SPECS}
DEFAULT_ENGINE: dict[str, str] = {f.name: f.engine for f in FORMAT_SPECS}
INT8_QUANTIZER: dict[str, str] = {f.name: f.quantizer for f in FORMAT_SPECS if f.quantizer}

_TORCH_CPU = ("fp32", "bf16")
_TORCH_GPU = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class EngineSpec:
    """One engine: what it needs, where it runs, at which precisions, what it reads."""

    name: str
    # "module:Class" of its runtime (imported only when used).
    runtime: str
    # Python packages it needs (importable names).
    packages: tuple[str, ...] = ()
    # Precisions per device kind ("cpu", "cuda"); a device kind missing here: not runnable.
    precisions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Whether the runtime class takes ``precision=`` (the others run FP32 only).
    takes_precision: bool = False
    # BF16 only where OpenVINO reports native BF16 kernels on this CPU.
    bf16_if_native: bool = False
    # The export formats it loads.
    reads: tuple[str, ...] = ()
    # The format its INT8 runtimes are quantized and loaded from (None: no INT8).
    int8_format: str | None = None
    # Runs the network in PyTorch (dtypes of torch).
    pytorch: bool = False
    # On "cuda": the ONNX Runtime execution provider its build must have (CPU builds would
    # silently run on the CPU).
    cuda_provider: str | None = None

    @property
    def runtime_class(self) -> type:
        """The runtime class (importing it, and torch with it)."""
        import importlib

        module, name = self.runtime.split(":")
        return getattr(importlib.import_module(module), name)

    def installed(self) -> bool:
        """Whether every package it needs is importable here (found, not imported)."""
        return all(importlib.util.find_spec(p) is not None for p in self.packages)


_RT = "res2net.deploy.runtimes"
_TORCH = {"cpu": _TORCH_CPU, "cuda": _TORCH_GPU}
ENGINE_SPECS = (
    EngineSpec("eager", f"{_RT}:EagerRuntime", precisions=_TORCH, takes_precision=True,
               pytorch=True, reads=("torchscript", "exported-program")),
    EngineSpec("fused", f"{_RT}:FusedRuntime", precisions=_TORCH, takes_precision=True,
               pytorch=True),
    EngineSpec("compile", f"{_RT}:CompileRuntime", precisions=_TORCH, takes_precision=True,
               pytorch=True),
    EngineSpec("onnxruntime", f"{_RT}:OnnxRuntime", ("onnxruntime",),
               {"cpu": ("fp32",), "cuda": ("fp32",)}, reads=("onnx",), int8_format="onnx",
               cuda_provider="CUDAExecutionProvider"),
    EngineSpec("openvino", f"{_RT}:OpenVinoRuntime", ("openvino",), {"cpu": ("fp32", "bf16")},
               takes_precision=True, bf16_if_native=True, reads=("openvino", "onnx"),
               int8_format="openvino"),
    EngineSpec("cudagraph", f"{_RT}:CudaGraphRuntime", precisions={"cuda": _TORCH_GPU},
               takes_precision=True, pytorch=True),
    EngineSpec("tensorrt", f"{_RT}:TensorRtRuntime", ("torch_tensorrt",),
               {"cuda": ("fp32", "fp16")}, takes_precision=True, pytorch=True),
    EngineSpec("executorch", "res2net.deploy.executorch:ExecuTorchRuntime", ("executorch",),
               {"cpu": ("fp32",)}, reads=("executorch",), int8_format="executorch"),
)  # fmt: skip
ENGINE_TABLE: dict[str, EngineSpec] = {spec.name: spec for spec in ENGINE_SPECS}
# Engines that run INT8 (from a quantized file of their ``int8_format``).
INT8_ENGINES = tuple(s.name for s in ENGINE_SPECS if s.int8_format)

# engine="auto": the engines to try, fastest first, per device and precision. From the
# interleaved measurements in BENCHMARKS.md: on the CPU in FP32, ONNX Runtime is the
# fastest or within noise of OpenVINO at every batch size; in BF16, OpenVINO's native BF16
# kernels (AMX / AVX512-BF16) beat PyTorch's; on a GPU one CUDA graph replay beats
# launching ~170 kernels from Python.
AUTO_ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "fp32"): ("onnxruntime", "openvino", "fused"),
    ("cpu", "bf16"): ("openvino", "fused"),
    ("cuda", "fp32"): ("cudagraph", "fused"),
    ("cuda", "fp16"): ("cudagraph", "fused"),
    ("cuda", "bf16"): ("cudagraph", "fused"),
}


def device_kind(device: str) -> str:
    """``"cuda"`` for any CUDA device name (``"cuda:1"``), else ``"cpu"``."""
    return "cuda" if device.startswith("cuda") else "cpu"


def engine_names() -> list[str]:
    """Every engine this library knows, in table order (installed here or not)."""
    return list(ENGINE_TABLE)


def precisions_on(kind: str) -> tuple[str, ...]:
    """Every precision some engine runs on ``kind`` (``"cpu"`` or ``"cuda"``), INT8 included
    where an engine quantizes (CPU): the ``--precision`` choices of the CLI's help."""
    found = [p for spec in ENGINE_SPECS for p in spec.precisions.get(kind, ())]
    if kind == "cpu":
        found += ["int8"] * bool(INT8_ENGINES)
    return tuple(dict.fromkeys(found))
