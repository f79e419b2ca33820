"""Inference runtimes behind one interface: a callable from a float32 NCHW batch to logits.

Every engine takes the same input (``numpy.ndarray``, N x 3 x H x W, float32, already
preprocessed) and returns ``numpy.ndarray`` logits (N x classes, float32), so the
predictor, the server and the benchmark never care which engine runs underneath.

Engines: ``eager`` (plain PyTorch, the numerical reference), ``fused`` (eager on the
rewritten network of :mod:`res2net.deploy.fuse`), ``compile`` (``torch.compile`` of the
rewritten network), ``onnxruntime`` and ``openvino`` (the rewritten network converted in
memory), and ``tensorrt`` (through ``torch_tensorrt``, only where it and a GPU exist).
:func:`res2net.deploy.export.load_exported` runs exported files in the same engines.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from res2net.models.res2net import Res2Net


class Runtime(Protocol):
    """A loaded model in some engine."""

    engine: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed float32 N x 3 x H x W batch."""
        ...


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
    """Plain PyTorch eager execution (the numerical reference for every other engine)."""

    engine = "eager"

    def __init__(self, model: nn.Module, device: str = "cpu", *, set_eval: bool = True) -> None:
        self.device = torch.device(device)
        self.model = (model.eval() if set_eval else model).to(self.device)

    def _input(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(_as_float32(batch)).to(self.device)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(self._input(batch)).float().cpu().numpy()


class FusedRuntime(EagerRuntime):
    """Eager PyTorch on the BN-folded, branch-grouped, channels_last network."""

    engine = "fused"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        super().__init__(prepare_for_inference(model), device)

    def _input(self, batch: np.ndarray) -> torch.Tensor:
        return super()._input(batch).contiguous(memory_format=torch.channels_last)


class CompileRuntime(FusedRuntime):
    """``torch.compile`` (Inductor) of the rewritten network; compiles on the first call."""

    engine = "compile"

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        super().__init__(model, device)
        # dynamic=False: one specialised graph per input shape, the fastest for fixed crops.
        self.model = torch.compile(self.model, dynamic=False)


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

    def __init__(self, model: nn.Module, device: str = "cuda", precision: str = "fp32") -> None:
        import torch_tensorrt

        if not device.startswith("cuda"):
            raise ValueError("the tensorrt engine needs device='cuda'")
        super().__init__(model, device)
        dtype = torch.half if precision == "fp16" else torch.float32
        spec = torch_tensorrt.Input(
            min_shape=(1, 3, 224, 224), opt_shape=(8, 3, 224, 224), max_shape=(64, 3, 224, 224)
        )
        self.model = torch_tensorrt.compile(
            self.model, ir="dynamo", inputs=[spec], enabled_precisions={dtype}
        )


ENGINES: dict[str, type] = {
    "eager": EagerRuntime,
    "fused": FusedRuntime,
    "compile": CompileRuntime,
    "onnxruntime": OnnxRuntime,
    "openvino": OpenVinoRuntime,
    "tensorrt": TensorRtRuntime,
}
# The Python package each optional engine needs.
_ENGINE_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorrt": "torch_tensorrt",
}


def available_engines(device: str = "cpu") -> list[str]:
    """Engines whose libraries are importable here (and that can run on ``device``)."""
    names = []
    for name in ENGINES:
        package = _ENGINE_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            continue
        if name == "tensorrt" and not (device.startswith("cuda") and torch.cuda.is_available()):
            continue
        names.append(name)
    return names


def create_runtime(model: nn.Module, engine: str = "eager", *, device: str = "cpu") -> Runtime:
    """Wrap a (weights-loaded) model in the named engine.

    :param model: the PyTorch model; engines other than ``eager`` run a rewritten copy.
    :param engine: one of :data:`ENGINES` (see the module docstring).
    :param device: ``"cpu"`` or ``"cuda"``.
    :raises ValueError: unknown or unavailable engine, naming the available ones.
    """
    if engine not in available_engines(device):
        known = "unknown" if engine not in ENGINES else "unavailable"
        raise ValueError(
            f"{known} engine {engine!r} on {device}; available: "
            f"{', '.join(available_engines(device))}"
        )
    return ENGINES[engine](model, device=device)
