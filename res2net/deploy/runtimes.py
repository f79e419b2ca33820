"""Inference runtimes behind one interface: a callable from a float32 NCHW batch to logits.

Every engine takes the same input (``numpy.ndarray``, N x 3 x H x W, float32, already
preprocessed) and returns ``numpy.ndarray`` logits (N x classes, float32), so the
predictor, the server and the benchmark never care which engine runs underneath.

Engines: ``eager`` (plain PyTorch, the numerical reference), ``fused`` (eager on the
rewritten network of :mod:`res2net.deploy.fuse`), ``compile`` (``torch.compile`` of the
rewritten network), ``onnxruntime`` and ``openvino`` (the rewritten network converted in
memory by :mod:`res2net.deploy.convert`), ``cudagraph`` (the rewritten network replayed as
one CUDA graph per input shape, GPU only), ``tensorrt`` (through ``torch_tensorrt``, only
where it and a GPU exist) and ``executorch`` (:mod:`res2net.deploy.executorch`). What each
needs, where it runs, at which precisions and which files it reads: the engine table,
:mod:`res2net.deploy.engines`; :func:`create_runtime` and :func:`open_file` follow it.

``fp32`` means IEEE FP32 on every engine and every CPU: TF32 is switched off on a GPU,
oneDNN's implicit BF16 for FP32 matmuls is switched off on the CPU, and OpenVINO is always
compiled with an explicit ``INFERENCE_PRECISION_HINT`` (its default is BF16 on CPUs that
have it), so an FP32 row is never a TF32 or BF16 row in disguise.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from res2net.deploy.convert import convert_openvino, export_onnx, load_torch_file, write_model
from res2net.deploy.engines import (
    AUTO_ORDER,
    ENGINE_SPECS,
    ENGINE_TABLE,
    FORMATS,
    EngineSpec,
    device_kind,
)
from res2net.deploy.fuse import prepare_for_inference


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
    """Within: convolutions and matmuls of FP32 tensors run in IEEE FP32, on every device.

    On a GPU, PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later, which
    keeps only 10 mantissa bits: the ``allow_tf32`` switches, which every PyTorch release
    reads, are turned off; where the caller already uses the newer ``fp32_precision``
    settings (reading the old switches is then an error), those are set instead. On the CPU,
    ``torch.set_float32_matmul_precision("medium")`` (or ``torch.backends.mkldnn``'s
    ``fp32_precision = "bf16"``) lets oneDNN run FP32 matmuls in BF16 on CPUs with
    AVX512-BF16/AMX: oneDNN's ``fp32_precision`` is pinned to ``"ieee"`` here.
    """
    if device.type != "cuda":
        with _mkldnn_ieee():
            yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        targets = [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
        saved = [getattr(obj, attr) for obj, attr, _ in targets]
    except RuntimeError:  # "a mix of the legacy and new APIs": stay with the new one
        targets = [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
        saved = [getattr(obj, attr) for obj, attr, _ in targets]
    with _switched(targets, saved):
        yield


@contextlib.contextmanager
def _switched(targets: list[tuple[Any, str, Any]], saved: list[Any]) -> Iterator[None]:
    try:
        for obj, attr, value in targets:
            setattr(obj, attr, value)
        yield
    finally:
        for (obj, attr, _), value in zip(targets, saved, strict=True):
            setattr(obj, attr, value)


def _mkldnn_ieee() -> contextlib.AbstractContextManager:
    """oneDNN's FP32 convolutions and matmuls pinned to IEEE FP32 (PyTorch >= 2.9 settings)."""
    mkldnn = torch.backends.mkldnn
    parts = [getattr(mkldnn, name, None) for name in ("matmul", "conv")]
    targets = [(part, "fp32_precision", "ieee") for part in parts if part is not None]
    targets = [t for t in targets if hasattr(t[0], "fp32_precision")]
    return _switched(targets, [obj.fp32_precision for obj, _, _ in targets])


def _as_float32(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch, dtype=np.float32)


def ort_session_options(threads: int) -> Any:
    """ONNX Runtime session options for ``threads`` intra-op threads (one inter-op), every
    graph optimization, and two settings written out:

    - FP32 stays FP32: ONNX Runtime's only GEMM downgrade to BF16 (fast math, ARM64 only;
      x86 MLAS has none) is opt-in; set so that no default change can flip it.
    - The intra-op threads do not spin between calls. Spinning, they held the cores that the
      Predictor's decoding threads (or the server's request handling) wait for: on 2 cores
      (Intel Xeon, 2026-12-08, benchmarks/predict_throughput.py, batch 8, two runs each),
      turning it off took end to end FP32 from 23.2-23.6 to 23.6-24.3 img/s (0.87-0.89x to
      0.92x the model alone) and INT8 from 49.8-52.3 to 52.6-56.3 img/s (0.73-0.76x to
      0.83x); the model alone: FP32 unchanged, INT8 63-68 against 69 img/s spinning.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "0")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def allowed_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpu_threads() -> int:
    """Threads an engine should use: ``RES2NET_THREADS`` or the CPUs this process may use."""
    if os.environ.get("RES2NET_THREADS"):
        return int(os.environ["RES2NET_THREADS"])
    return allowed_cpus()


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
        # Dynamo counts those graphs per code object (Res2Net.forward, shared by every
        # network) and runs eager past its limit (8 by default): a bench of two models at
        # three batch sizes and two precisions passes it, and its "compile" rows were eager.
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, 64)
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
        with tempfile.TemporaryDirectory() as tmp:
            return self._load_file(export_onnx(model, Path(tmp) / "model.onnx", side))

    def _load_file(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort_session_options(cpu_threads())
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(path.read_bytes(), options, providers=providers)
        return session, session.get_inputs()[0].name

    def _run(self, engine: Any, batch: np.ndarray) -> np.ndarray:
        session, input_name = engine
        return session.run(None, {input_name: batch})[0]


# Precision name -> OpenVINO's INFERENCE_PRECISION_HINT. Always set: OpenVINO's CPU plugin
# otherwise runs BF16 wherever the CPU has AVX512-BF16 or AMX-BF16 (its documented default,
# "bf16 on platforms that natively support it"). INT8 models run their quantized operations
# in INT8 whatever the hint; the hint sets the precision of the rest, kept FP32.
OPENVINO_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_config(hint: str | None = "LATENCY", precision: str | None = "fp32") -> dict:
    """CPU plugin settings: a performance hint, every allowed core (see BENCHMARKS.md) or
    ``RES2NET_THREADS``, and the inference precision; ``None`` leaves that setting at
    OpenVINO's default.

    With fewer threads than allowed cores, OpenVINO's CPU pinning is turned off: each process
    pins its threads to the same first cores, so two single-thread processes (two Ray actors
    on two cores) shared one core and ran at half speed (measured 2026-12-08 on 2 cores,
    OpenVINO IR FP32 of Res2Net50_vd_26w_4s at batch 8: 13.0 images/s together pinned, 27.1
    unpinned, against 14.2 for one such process alone)."""
    config: dict[str, Any] = {}
    if hint:
        threads = cpu_threads()
        config.update(PERFORMANCE_HINT=hint, INFERENCE_NUM_THREADS=threads)
        if threads < allowed_cpus():
            config["ENABLE_CPU_PINNING"] = False
    if precision:
        config["INFERENCE_PRECISION_HINT"] = OPENVINO_PRECISION_HINTS[precision]
    return config


@functools.cache
def openvino_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has native BF16 here (AVX512-BF16 or AMX-BF16), read
    from its own ``OPTIMIZATION_CAPABILITIES``."""
    if importlib.util.find_spec("openvino") is None:
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_default_precision() -> str:
    """The precision OpenVINO's CPU plugin runs when none is asked for: ``bf16`` or ``fp32``."""
    import openvino as ov

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    return {"bf16": "bf16", "f32": "fp32"}.get(hint, hint)


class OpenVinoRuntime(_PerInputSize):
    """OpenVINO on the CPU (or another OpenVINO device name).

    :param model: a PyTorch model (converted after the rewrites), an ``openvino.Model``
        (e.g. quantized), or the path of an ``.xml`` / ``.onnx`` file.
    :param device: ``"cpu"`` or an OpenVINO device name such as ``"GPU"``.
    :param hint: OpenVINO ``PERFORMANCE_HINT``: ``"LATENCY"`` or ``"THROUGHPUT"``; ``None``
        leaves OpenVINO's default (and thread count).
    :param precision: ``"fp32"`` (IEEE FP32 on every CPU), ``"bf16"``, ``"int8"`` (a
        quantized model; the rest in FP32), or ``None`` for OpenVINO's default (BF16 on
        CPUs with native BF16: only for comparing against a plain conversion).
    """

    engine = "openvino"

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        *,
        hint: str | None = "LATENCY",
        precision: str | None = "fp32",
    ) -> None:
        if precision is not None and precision not in OPENVINO_PRECISION_HINTS:
            raise ValueError(
                f"OpenVINO runs {', '.join(OPENVINO_PRECISION_HINTS)}, not precision={precision!r}"
            )
        self.hint, self.precision = hint, precision
        if not isinstance(model, (nn.Module, str, os.PathLike)):
            # An in-memory openvino.Model, e.g. straight out of NNCF.
            self.device, self._source = device, None
            self._engines = {(0, 0): self._compile(model)}
        else:
            super().__init__(model, device)

    def _compile(self, ov_model: Any) -> Any:
        import openvino as ov

        device = "CPU" if self.device == "cpu" else self.device.upper()
        compiled = ov.Core().compile_model(
            ov_model, device, openvino_config(self.hint, self.precision)
        )
        return compiled, compiled.create_infer_request()

    def inference_precisions(self) -> set[str]:
        """OpenVINO's own ``INFERENCE_PRECISION_HINT`` of each model compiled so far (``f32``,
        ``bf16``...): what really runs, read back from the compiled models."""
        return {
            compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            for compiled, _ in self._engines.values()
        }

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


def _runs_on(spec: EngineSpec, device: str) -> bool:
    """Whether ``spec`` is installed here and can run on ``device``."""
    kind = device_kind(device)
    if kind not in spec.precisions or not spec.installed():
        return False
    if "cpu" not in spec.precisions and not torch.cuda.is_available():
        return False  # GPU only, and no GPU
    if kind == "cuda" and spec.cuda_provider:
        import onnxruntime as ort

        return spec.cuda_provider in ort.get_available_providers()
    return True


def available_engines(device: str = "cpu") -> list[str]:
    """Engines whose libraries are importable here (and that can run on ``device``)."""
    return [spec.name for spec in ENGINE_SPECS if _runs_on(spec, device)]


def engine_precisions(engine: str, device: str = "cpu") -> tuple[str, ...]:
    """The precisions ``create_runtime`` accepts for ``engine`` on ``device`` (from the
    engine table, :data:`res2net.deploy.engines.ENGINE_SPECS`; BF16 in OpenVINO only where
    this CPU runs it natively).

    INT8 is not among them: it needs calibration images (``create_runtime(...,
    calibration=...)``, for the engines of :data:`res2net.deploy.engines.INT8_ENGINES`).
    """
    spec = ENGINE_TABLE[engine]
    allowed = spec.precisions.get(device_kind(device), ())
    if spec.bf16_if_native and not openvino_runs_bf16():
        allowed = tuple(p for p in allowed if p != "bf16")
    return allowed or ("fp32",)


def auto_engine(device: str = "cpu", precision: str = "fp32") -> str:
    """The engine ``engine="auto"`` runs: the first of :data:`AUTO_ORDER` for ``device`` and
    ``precision`` that is installed here and runs that precision (``fused`` otherwise)."""
    available = available_engines(device)
    for engine in AUTO_ORDER.get((device_kind(device), precision), ()):
        if engine in available and precision in engine_precisions(engine, device):
            return engine
    return "fused"


def _check_precision(engine: str, device: str, precision: str, chosen: str) -> None:
    allowed = engine_precisions(engine, device)
    if precision in allowed:
        return
    why = ""
    if ENGINE_TABLE[engine].bf16_if_native and precision == "bf16":
        why = (
            " (OpenVINO's BF16 needs a CPU with AVX512-BF16 or AMX-BF16; this one has "
            "neither: use fp32, or bf16 in a PyTorch engine)"
        )
    elif precision == "int8" and ENGINE_TABLE[engine].int8_format:
        why = " (int8 needs calibration images: calibration=...)"
    raise ValueError(
        f"engine {engine!r}{chosen} on {device} runs {', '.join(allowed)}, not {precision!r}{why}"
    )


def create_runtime(
    model: nn.Module,
    engine: str = "eager",
    *,
    device: str = "cpu",
    precision: str = "fp32",
    calibration: np.ndarray | None = None,
) -> Runtime:
    """Wrap a (weights-loaded) model in the named engine.

    :param model: the PyTorch model; engines other than ``eager`` run a rewritten copy.
    :param engine: a name of :data:`res2net.deploy.engines.ENGINE_TABLE` (see the module
        docstring), or ``"auto"``: the fastest installed here for ``precision``
        (:func:`auto_engine`); ``runtime.engine`` names the one chosen.
    :param device: ``"cpu"`` or ``"cuda"``.
    :param precision: one of :func:`engine_precisions` for this engine and device, or
        ``"int8"`` with ``calibration`` for an engine with an INT8 format.
    :param calibration: N x 3 x S x S preprocessed images that set the INT8 ranges: the
        runtime then runs the INT8 file :func:`res2net.deploy.export.export_model` writes.
    :raises ValueError: unknown or unavailable engine, naming the available ones; a
        precision the engine does not run, naming those it does.
    """
    chosen = ""
    if engine == "auto":
        engine, chosen = auto_engine(device, precision), " (chosen by engine='auto')"
    if engine not in available_engines(device):
        known = "unknown" if engine not in ENGINE_TABLE else "unavailable"
        raise ValueError(
            f"{known} engine {engine!r} on {device}; available: "
            f"{', '.join(available_engines(device))}"
        )
    spec = ENGINE_TABLE[engine]
    if precision == "int8" and calibration is not None and spec.int8_format:
        return _int8_runtime(spec, model, device, calibration)
    if calibration is not None:
        raise ValueError(f"calibration is for precision='int8', not {precision!r}")
    _check_precision(engine, device, precision, chosen)
    kwargs = {"precision": precision} if spec.takes_precision else {}
    return spec.runtime_class(model, device=device, **kwargs)


def _int8_runtime(
    spec: EngineSpec, model: nn.Module, device: str, calibration: np.ndarray
) -> Runtime:
    """The INT8 file of ``spec.int8_format`` that export writes, loaded in ``spec``'s engine."""
    fmt, side = spec.int8_format, calibration.shape[-1]
    prepared = prepare_for_inference(model, channels_last=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(prepared, fmt, Path(tmp) / f"int8{FORMATS[fmt]}", side, calibration)
        return open_file(path, fmt, spec.name, device, "int8")


def open_file(path: Path, fmt: str, engine: str, device: str, precision: str) -> Runtime:
    """A runtime of ``engine`` on an exported file of format ``fmt`` (loaded now).

    :raises ValueError: an engine that does not read ``fmt``, naming the one that does.
    """
    spec = ENGINE_TABLE.get(engine)
    if spec is None or fmt not in spec.reads:
        readers = [s.name for s in ENGINE_SPECS if fmt in s.reads]
        raise ValueError(
            f"a {fmt} export cannot run in engine {engine!r}; use {' or '.join(readers)}"
        )
    if spec.pytorch:
        # An exported program is already in inference form and refuses .eval().
        module = load_torch_file(path, fmt, device)
        return spec.runtime_class(module, device, set_eval=fmt == "torchscript")
    # OpenVINO: always an explicit precision, its own default is BF16 on CPUs that have it.
    kwargs = {"precision": precision} if spec.takes_precision else {}
    return spec.runtime_class(path, device, **kwargs)
