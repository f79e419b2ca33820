"""Inference runtimes behind one interface: a callable from a float32 NCHW batch to logits.

Every engine takes the same input (``numpy.ndarray``, N x 3 x H x W, float32, already
preprocessed) and returns ``numpy.ndarray`` logits (N x classes, float32), so the
predictor, the server and the benchmark never care which engine runs underneath.

Engines: ``eager`` (plain PyTorch, the numerical reference), ``fused`` (eager on the
rewritten network of :mod:`res2net.deploy.fuse`), ``compile`` (``torch.compile`` of the
rewritten network), ``onnxruntime`` and ``openvino`` (the rewritten network converted in
memory), ``cudagraph`` (the rewritten network replayed as one CUDA graph per input shape,
GPU only) and ``tensorrt`` (through ``torch_tensorrt``, only where it and a GPU exist).
:func:`res2net.deploy.export.load_exported` runs exported files in the same engines.
``executorch`` runs an XNNPACK ``.pte`` program in ExecuTorch's runtime, on the CPU
(:mod:`res2net.deploy.executorch`).

Precision: the PyTorch engines run ``fp32``, ``fp16`` or ``bf16`` (:data:`PRECISIONS`;
fp16 on a GPU only); ONNX Runtime and OpenVINO run FP32 here and INT8 through
:mod:`res2net.deploy.int8`. On a GPU, ``fp32`` means IEEE FP32: TF32 is switched off while
those engines run, so an FP32 row is not a TF32 row in disguise.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from res2net.deploy.executorch import ExecuTorchRuntime
from res2net.models.res2net import Res2Net


class Runtime(Protocol):
    """A loaded model in some engine."""

    engine: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed float32 N x 3 x H x W batch."""
        ...


# Precision name -> the dtype the PyTorch engines run the network in.
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def _dtype(precision: str, device: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("fp16 runs on a GPU (device='cuda'); on the CPU use bf16 or fp32")
    return PRECISIONS[precision]


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """Within: cuDNN convolutions and CUDA matmuls in IEEE FP32, not TF32 (no-op on CPU).

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later GPUs, which
    keeps only 10 mantissa bits. Sets the ``allow_tf32`` switches, which every PyTorch
    release reads; where the caller already uses the newer ``fp32_precision`` settings
    (reading the old switches is then an error), those are set instead.
    """
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        targets = [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
        saved = [getattr(obj, attr) for obj, attr, _ in targets]
    except RuntimeError:  # "a mix of the legacy and new APIs": stay with the new one
        targets = [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
        saved = [getattr(obj, attr) for obj, attr, _ in targets]
    try:
        for obj, attr, value in targets:
            setattr(obj, attr, value)
        yield
    finally:
        for (obj, attr, _), value in zip(targets, saved, strict=True):
            setattr(obj, attr, value)


def _as_float32(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch, dtype=np.float32)


def cpu_threads() -> int:
    """Threads an engine should use: ``RES2NET_THREADS`` or the CPUs this process may use."""
    if os.environ.get("RES2NET_THREADS"):
        return int(os.environ["RES2NET_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def prepare_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Eval-mode copy with the exact rewrites of :func:`~res2net.deploy.fuse.fuse_model`.

    Models that are not a :class:`Res2Net` (e.g. an already traced module) are only put in
    eval mode.
    """
    from res2net.deploy.fuse import fuse_model

    if isinstance(model, Res2Net) and not getattr(model, "is_fused", False):
        return fuse_model(model, channels_last=channels_last)
    return model.eval()


class EagerRuntime:
    """Plain PyTorch eager execution (the numerical reference for every other engine).

    :param precision: ``"fp32"``, ``"fp16"`` (GPU) or ``"bf16"``: the dtype of the weights
        and activations; logits come back as float32.
    """

    engine = "eager"

    def __init__(
        self,
        model: nn.Module,
        device: str = "cpu",
        *,
        set_eval: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = _dtype(precision, device)
        self.model = self._network(model, set_eval).to(self.device, self.dtype)

    def _network(self, model: nn.Module, set_eval: bool) -> nn.Module:
        """The module this runtime runs; a copy when the cast would change the caller's."""
        if set_eval:
            model = model.eval()
        if self.dtype != torch.float32:
            model = copy.deepcopy(model)
        return model

    def device_input(self, batch: np.ndarray) -> torch.Tensor:
        """A numpy batch as :meth:`device_call` takes it: on the device, dtype, layout."""
        return torch.from_numpy(_as_float32(batch)).to(self.device, self.dtype)

    def device_call(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch already on the device in the runtime's dtype (no copies).

        On a GPU this returns before the work is done (CUDA is asynchronous): synchronize
        before reading a clock.
        """
        with torch.inference_mode(), ieee_fp32(self.device):
            return self.model(x)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.device_call(self.device_input(batch)).float().cpu().numpy()


class FusedRuntime(EagerRuntime):
    """Eager PyTorch on the BN-folded, branch-grouped, channels_last network.

    BatchNorm is folded in FP32 before the cast to ``precision``.
    """

    engine = "fused"

    def _network(self, model: nn.Module, set_eval: bool) -> nn.Module:
        prepared = prepare_for_inference(model)  # a copy, unless there was nothing to fuse
        return super()._network(prepared, False) if prepared is model else prepared

    def device_input(self, batch: np.ndarray) -> torch.Tensor:
        return super().device_input(batch).contiguous(memory_format=torch.channels_last)


class CompileRuntime(FusedRuntime):
    """``torch.compile`` (Inductor) of the rewritten network; compiles on the first call."""

    engine = "compile"

    def __init__(self, model: nn.Module, device: str = "cpu", *, precision: str = "fp32") -> None:
        super().__init__(model, device, precision=precision)
        # dynamic=False: one specialised graph per input shape, the fastest for fixed crops.
        self.model = torch.compile(self.model, dynamic=False)


class CudaGraphRuntime(FusedRuntime):
    """The rewritten network captured as one CUDA graph per input shape, then replayed.

    At batch 1 a Res2Net-50 is a chain of about 170 small kernels; launching them one by
    one from Python costs more than running them. A graph replays the whole chain with one
    launch. The first call of each shape lets cuDNN pick its fastest kernels (a few warm-up
    runs on a side stream, ``cudnn.benchmark`` on), then captures. GPU only.
    """

    engine = "cudagraph"

    def __init__(self, model: nn.Module, device: str = "cuda", *, precision: str = "fp32") -> None:
        if not (device.startswith("cuda") and torch.cuda.is_available()):
            raise ValueError("the cudagraph engine needs a CUDA GPU (device='cuda')")
        super().__init__(model, device, precision=precision)
        torch.backends.cudnn.benchmark = True
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, shape: tuple[int, ...]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        static_in = torch.zeros(shape, device=self.device, dtype=self.dtype)
        static_in = static_in.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), ieee_fp32(self.device), torch.cuda.stream(side):
            for _ in range(3):  # cuDNN autotuning and lazy initialisation, outside the graph
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), ieee_fp32(self.device), torch.cuda.graph(graph):
            static_out = self.model(static_in)
        return graph, static_in, static_out

    def device_call(self, x: torch.Tensor) -> torch.Tensor:
        """Replay the graph of ``x``'s shape; the result is overwritten by the next call."""
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(key)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out


def batch_dynamic_program(model: nn.Module, side: int) -> torch.export.ExportedProgram:
    """``torch.export`` of an eval-mode model at side x side with a dynamic batch dimension."""
    example = torch.zeros(2, 3, side, side)
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=batch)


class _PerInputSize:
    """Engines built from a PyTorch model convert it once per input H x W, on first use.

    Converting is slow (seconds), and a fixed spatial size lets the engines plan memory
    and pick kernels ahead of time; the batch dimension stays dynamic.
    """

    def __init__(self, model: Any, device: str) -> None:
        self.device = device
        self._engines: dict[tuple[int, int], Any] = {}
        if isinstance(model, nn.Module):
            self._source = prepare_for_inference(model, channels_last=False)
        else:
            self._source = None
            self._engines[(0, 0)] = self._load_file(Path(model))

    def _engine_for(self, batch: np.ndarray) -> Any:
        if self._source is None:
            return self._engines[(0, 0)]
        key = tuple(batch.shape[2:])
        if key not in self._engines:
            if key[0] != key[1]:
                raise ValueError(f"{self.engine} runtime expects square inputs, got {key}")
            self._engines[key] = self._convert(self._source, key[0])
        return self._engines[key]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = _as_float32(batch)
        return self._run(self._engine_for(batch), batch)


class OnnxRuntime(_PerInputSize):
    """ONNX Runtime on an ONNX file (exported from the rewritten network when given a model).

    :param model: a PyTorch model, or the path of an ``.onnx`` file.
    :param device: ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
    """

    engine = "onnxruntime"

    def _convert(self, model: nn.Module, side: int) -> Any:
        from res2net.deploy.export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            return self._load_file(export_onnx(model, Path(tmp) / "model.onnx", side))

    def _load_file(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(path.read_bytes(), options, providers=providers)
        return session, session.get_inputs()[0].name

    def _run(self, engine: Any, batch: np.ndarray) -> np.ndarray:
        session, input_name = engine
        return session.run(None, {input_name: batch})[0]


def openvino_config(hint: str = "LATENCY") -> dict[str, Any]:
    """CPU plugin settings: a performance hint and every allowed core (see BENCHMARKS.md)."""
    return {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": cpu_threads()}


def convert_openvino(model: nn.Module, input_size: int = 224) -> Any:
    """An ``openvino.Model`` of an eval-mode network at a fixed H = W and a dynamic batch.

    Converted from ``torch.export``'s graph, which OpenVINO reads faster than tracing.
    """
    import openvino as ov

    return ov.convert_model(batch_dynamic_program(model, input_size))


class OpenVinoRuntime(_PerInputSize):
    """OpenVINO on the CPU (or another OpenVINO device name).

    :param model: a PyTorch model (converted after the rewrites), an ``openvino.Model``
        (e.g. quantized), or the path of an ``.xml`` / ``.onnx`` file.
    :param device: ``"cpu"`` or an OpenVINO device name such as ``"GPU"``.
    :param hint: OpenVINO ``PERFORMANCE_HINT``: ``"LATENCY"`` or ``"THROUGHPUT"``; ``None``
        compiles with OpenVINO's defaults.
    """

    engine = "openvino"

    def __init__(self, model: Any, device: str = "cpu", *, hint: str | None = "LATENCY") -> None:
        self.hint = hint
        if not isinstance(model, (nn.Module, str, os.PathLike)):
            # An in-memory openvino.Model, e.g. straight out of NNCF.
            self.device, self._source = device, None
            self._engines = {(0, 0): self._compile(model)}
        else:
            super().__init__(model, device)

    def _compile(self, ov_model: Any) -> Any:
        import openvino as ov

        device = "CPU" if self.device == "cpu" else self.device.upper()
        config = openvino_config(self.hint) if self.hint else {}
        compiled = ov.Core().compile_model(ov_model, device, config)
        return compiled, compiled.create_infer_request()

    def _convert(self, model: nn.Module, side: int) -> Any:
        return self._compile(convert_openvino(model, side))

    def _load_file(self, path: Path) -> Any:
        import openvino as ov

        return self._compile(ov.Core().read_model(str(path)))

    def _run(self, engine: Any, batch: np.ndarray) -> np.ndarray:
        compiled, request = engine
        result = request.infer([batch], share_inputs=True)
        return np.array(result[compiled.output(0)], dtype=np.float32)


class TensorRtRuntime(FusedRuntime):
    """TensorRT through ``torch_tensorrt`` (GPU only; FP32, or FP16 with ``precision``)."""

    engine = "tensorrt"

    def __init__(self, model: nn.Module, device: str = "cuda", *, precision: str = "fp32") -> None:
        import torch_tensorrt

        if not device.startswith("cuda"):
            raise ValueError("the tensorrt engine needs device='cuda'")
        super().__init__(model, device, precision=precision)
        spec = torch_tensorrt.Input(
            min_shape=(1, 3, 224, 224),
            opt_shape=(8, 3, 224, 224),
            max_shape=(64, 3, 224, 224),
            dtype=self.dtype,
        )
        self.model = torch_tensorrt.compile(
            self.model, ir="dynamo", inputs=[spec], enabled_precisions={self.dtype}
        )


ENGINES: dict[str, type] = {
    "eager": EagerRuntime,
    "fused": FusedRuntime,
    "compile": CompileRuntime,
    "onnxruntime": OnnxRuntime,
    "openvino": OpenVinoRuntime,
    "cudagraph": CudaGraphRuntime,
    "tensorrt": TensorRtRuntime,
    "executorch": ExecuTorchRuntime,
}
# Engines that run the network in PyTorch dtypes (every precision of PRECISIONS).
TORCH_ENGINES = ("eager", "fused", "compile", "cudagraph", "tensorrt")
# Engines that need a CUDA GPU.
GPU_ONLY = ("cudagraph", "tensorrt")
# Engines whose CPU build would silently run on the CPU when asked for "cuda".
_CPU_LIBRARIES = ("onnxruntime", "openvino", "executorch")
# The Python package each optional engine needs.
_ENGINE_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorrt": "torch_tensorrt",
    "executorch": "executorch",
}


def available_engines(device: str = "cpu") -> list[str]:
    """Engines whose libraries are importable here (and that can run on ``device``)."""
    names = []
    for name in ENGINES:
        package = _ENGINE_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            continue
        if name in GPU_ONLY and not (device.startswith("cuda") and torch.cuda.is_available()):
            continue
        if device.startswith("cuda") and name in _CPU_LIBRARIES and not _on_gpu(name):
            continue
        names.append(name)
    return names


def _on_gpu(name: str) -> bool:
    """Whether the installed build of an ONNX Runtime / OpenVINO can use a CUDA GPU."""
    if name == "onnxruntime":
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    return False  # OpenVINO runs on Intel GPUs, not CUDA ones


def engine_precisions(engine: str, device: str = "cpu") -> tuple[str, ...]:
    """The precisions ``create_runtime`` accepts for ``engine`` on ``device``.

    INT8 is not among them: it needs calibration data (:mod:`res2net.deploy.int8`).
    """
    if engine == "tensorrt":
        return ("fp32", "fp16")
    if engine in TORCH_ENGINES:
        return ("fp32", "fp16", "bf16") if device.startswith("cuda") else ("fp32", "bf16")
    return ("fp32",)


def create_runtime(
    model: nn.Module, engine: str = "eager", *, device: str = "cpu", precision: str = "fp32"
) -> Runtime:
    """Wrap a (weights-loaded) model in the named engine.

    :param model: the PyTorch model; engines other than ``eager`` run a rewritten copy.
    :param engine: one of :data:`ENGINES` (see the module docstring).
    :param device: ``"cpu"`` or ``"cuda"``.
    :param precision: one of :func:`engine_precisions` for this engine and device.
    :raises ValueError: unknown or unavailable engine, naming the available ones; a
        precision the engine does not run, naming those it does.
    """
    if engine not in available_engines(device):
        known = "unknown" if engine not in ENGINES else "unavailable"
        raise ValueError(
            f"{known} engine {engine!r} on {device}; available: "
            f"{', '.join(available_engines(device))}"
        )
    allowed = engine_precisions(engine, device)
    if precision not in allowed:
        raise ValueError(
            f"engine {engine!r} on {device} runs {', '.join(allowed)}, not {precision!r}"
        )
    if engine in TORCH_ENGINES:
        return ENGINES[engine](model, device=device, precision=precision)
    return ENGINES[engine](model, device=device)
