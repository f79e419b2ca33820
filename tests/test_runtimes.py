"""Every engine gives eager FP32's answer on the real photos.

Weights: the real PaddleClas network with randomized BatchNorm (``paddle_reference``), so the
logits depend on the image and a wrong conversion would change them. Eager itself is checked
against PaddleClas's logits first, so the reference is the real one, not our own output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PHOTOS, TINY_ARCH, assert_logits_match

from res2net.builder import create_model
from res2net.deploy.runtimes import (
    CudaGraphRuntime,
    auto_engine,
    available_engines,
    create_runtime,
    engine_precisions,
    ieee_fp32,
    openvino_runs_bf16,
)
from res2net.models.res2net import Res2Net, Res2NetConfig

NAME = "Res2Net50_vd_26w_4s"
CPU_ENGINES = ["fused", "compile", "onnxruntime", "openvino"]


def test_cpu_engines_are_available():
    assert set(CPU_ENGINES) <= set(available_engines("cpu"))
    assert "tensorrt" not in available_engines("cpu")


@pytest.mark.slow
@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_engine_matches_eager(engine, vd50_with_reference):
    model, batch, eager = vd50_with_reference
    runtime = create_runtime(model, engine)
    assert runtime.engine == engine
    assert_logits_match(runtime(batch), eager)
    if engine == "openvino":  # OpenVINO's own reading of what it compiled: IEEE FP32
        assert runtime.inference_precisions() == {"f32"}
    if engine != "compile":  # compile specialises per shape: a second shape recompiles (minutes)
        # Dynamic batch: a single image gives the same row.
        assert_logits_match(runtime(batch[1:]), eager[1:])


def test_unknown_engine_is_named():
    with pytest.raises(ValueError, match="unknown engine 'tensorflow'.*available: eager"):
        create_runtime(create_model(NAME), "tensorflow")


@pytest.mark.slow
def test_predictor_runs_on_openvino(paddle_reference):
    """The predictor (another module) reaches the engines only through create_runtime."""
    from res2net.deploy.predictor import Predictor

    weights, _ = paddle_reference(NAME)
    photos = [str(p) for p in PHOTOS[:3]]
    eager = Predictor(NAME, str(weights), engine="eager", num_workers=0).predict(photos)
    fast = Predictor(NAME, str(weights), engine="openvino", num_workers=0).predict(photos)
    assert [p.class_ids for p in fast] == [p.class_ids for p in eager]
    assert np.allclose([p.scores for p in fast], [p.scores for p in eager], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_bf16_keeps_the_answer(engine, vd50_with_reference):
    """BF16 (8 mantissa bits) on the real reference: same top-1, logits within 3% of the
    largest, and the caller's FP32 model is left as it was."""
    model, batch, eager = vd50_with_reference
    runtime = create_runtime(model, engine, precision="bf16")
    out = runtime(batch)
    assert out.dtype == np.float32 and runtime.precision == "bf16"
    assert (out.argmax(1) == eager.argmax(1)).all()
    assert np.abs(out - eager).max() <= 3e-2 * np.abs(eager).max()
    assert next(model.parameters()).dtype == torch.float32


def test_precision_is_checked_per_engine():
    model = create_model(NAME)
    with pytest.raises(ValueError, match="engine 'eager' on cpu runs fp32, bf16, not 'fp16'"):
        create_runtime(model, "eager", precision="fp16")
    with pytest.raises(ValueError, match="engine 'onnxruntime' on cpu runs fp32, not 'bf16'"):
        create_runtime(model, "onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="runs fp32, bf16, not 'int4'"):
        create_runtime(model, "fused", precision="int4")
    assert engine_precisions("eager", "cuda") == ("fp32", "fp16", "bf16")
    assert engine_precisions("tensorrt", "cuda") == ("fp32", "fp16")


def test_gpu_engines_need_a_gpu():
    model = create_model(NAME)
    if not torch.cuda.is_available():
        assert "cudagraph" not in available_engines("cpu")
        with pytest.raises(ValueError, match="unavailable engine 'cudagraph' on cpu"):
            create_runtime(model, "cudagraph")
    with pytest.raises(ValueError, match="cudagraph engine needs a CUDA GPU"):
        CudaGraphRuntime(model, "cpu")
    # A CPU-only ONNX Runtime build must not be offered for cuda (it would run on the CPU).
    import onnxruntime as ort

    gpu_ort = "CUDAExecutionProvider" in ort.get_available_providers()
    assert ("onnxruntime" in available_engines("cuda")) == gpu_ort
    assert "openvino" not in available_engines("cuda")


def test_ieee_fp32_switches_tf32_off_and_restores():
    """FP32 rows on a GPU are IEEE FP32: the TF32 switches are off inside, restored after.
    Setting them needs no GPU, so this runs everywhere."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul

    def state():
        return cudnn.allow_tf32, matmul.allow_tf32

    before = state()
    with ieee_fp32(torch.device("cuda")):
        assert state() == (False, False)
    assert state() == before
    with ieee_fp32(torch.device("cpu")):
        assert state() == before
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        # A caller on PyTorch's newer settings: those are switched instead (reading the old
        # ones would raise), and restored.
        saved = cudnn.conv.fp32_precision
        try:
            cudnn.conv.fp32_precision = "tf32"
            cudnn.rnn.fp32_precision = "ieee"
            with ieee_fp32(torch.device("cuda")):
                assert cudnn.conv.fp32_precision == "ieee" == matmul.fp32_precision
            assert cudnn.conv.fp32_precision == "tf32"
        finally:
            cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = saved
        assert state() == before


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["eager", "fused", "cudagraph"])
def test_gpu_engine_matches_cpu_eager(engine, vd50_with_reference):
    """On a GPU: FP32 (IEEE) within 1e-4 with the same top-5, batch 2 and 1 (two CUDA
    graphs); FP16 and BF16 keep the top-1."""
    model, batch, eager = vd50_with_reference
    runtime = create_runtime(model, engine, device="cuda")
    assert_logits_match(runtime(batch), eager)
    assert_logits_match(runtime(batch[1:]), eager[1:])
    assert_logits_match(runtime(batch), eager)  # the first graph is replayed, not recaptured
    for precision in ("fp16", "bf16"):
        low = create_runtime(model, engine, device="cuda", precision=precision)(batch)
        assert (low.argmax(1) == eager.argmax(1)).all()


def _tiny() -> Res2Net:
    return Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10).eval()


@pytest.fixture
def openvino_compiles(monkeypatch):
    """The config of every OpenVINO ``compile_model`` call made while the test runs."""
    import openvino as ov

    configs, compile_model = [], ov.Core.compile_model

    def spy(self, model, device=None, config=None):
        configs.append(dict(config or {}))
        return compile_model(self, model, device, config or {})

    monkeypatch.setattr(ov.Core, "compile_model", spy)
    return configs


def test_openvino_fp32_is_stated_and_compiled_as_f32(openvino_compiles, tmp_path):
    """OpenVINO's CPU default is BF16 where the CPU has it (AMX, AVX512-BF16): every FP32
    path states f32, and the compiled model reports f32. The explicit hint fails on any CPU
    if dropped; the compiled property on CPUs whose default is bf16."""
    from res2net.deploy.export import export_model, load_exported

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    runtimes = [create_runtime(_tiny(), "openvino")]
    for fmt in ("openvino", "onnx"):
        path = export_model(_tiny(), tmp_path / fmt, fmt=fmt, input_size=32)
        runtimes.append(load_exported(path, "openvino"))
    for runtime in runtimes:
        runtime(x)
        assert runtime.inference_precisions() == {"f32"}
    assert len(openvino_compiles) == 3
    assert all(c["INFERENCE_PRECISION_HINT"] == "f32" for c in openvino_compiles)


@pytest.mark.slow
def test_server_runtime_runs_openvino_in_f32(openvino_compiles):
    from res2net.deploy.server.runner import build_service

    runtime = build_service(NAME, None, engine="openvino").predictor.runtime
    runtime(np.zeros((1, 3, 224, 224), dtype=np.float32))
    assert runtime.inference_precisions() == {"f32"}
    assert [c["INFERENCE_PRECISION_HINT"] for c in openvino_compiles] == ["f32"]


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_torch_fp32_is_ieee_even_when_the_process_allows_bf16(engine):
    """``torch.set_float32_matmul_precision("medium")`` lets oneDNN run FP32 matmuls in BF16
    on CPUs that have it; inside our FP32 call oneDNN's own setting reads "ieee"."""
    mkldnn = torch.backends.mkldnn
    seen = []
    runtime = create_runtime(_tiny(), engine)
    runtime.model.register_forward_hook(
        lambda *_: seen.append((mkldnn.matmul.fp32_precision, mkldnn.conv.fp32_precision))
    )
    saved = mkldnn.matmul.fp32_precision, mkldnn.conv.fp32_precision
    try:
        mkldnn.matmul.fp32_precision = mkldnn.conv.fp32_precision = "bf16"
        runtime(np.zeros((1, 3, 32, 32), dtype=np.float32))
        assert seen == [("ieee", "ieee")]
        assert mkldnn.matmul.fp32_precision == "bf16"  # the caller's setting is restored
    finally:
        mkldnn.matmul.fp32_precision, mkldnn.conv.fp32_precision = saved


def test_onnxruntime_fp32_states_no_fast_math():
    runtime = create_runtime(_tiny(), "onnxruntime")
    runtime(np.zeros((1, 3, 32, 32), dtype=np.float32))
    session = runtime._engines[(32, 32)][0]
    entry = "mlas.enable_gemm_fastmath_arm64_bfloat16"
    assert session.get_session_options().get_session_config_entry(entry) == "0"


def test_onnxruntime_threads_do_not_spin_beside_the_decoding_threads(tmp_path):
    """ONNX Runtime's threads spin between calls by default, holding the cores that the
    Predictor's decoding threads and the server's request handling need (measured in
    ort_session_options' docstring); every session, the server's streamed ones too, turns it off
    (read back from ONNX Runtime)."""
    from res2net.deploy.convert import export_onnx
    from res2net.deploy.server.plan import StreamedOnnx

    entry = "session.intra_op.allow_spinning"
    runtime = create_runtime(_tiny(), "onnxruntime")
    runtime(np.zeros((1, 3, 32, 32), dtype=np.float32))
    options = runtime._engines[(32, 32)][0].get_session_options()
    assert options.get_session_config_entry(entry) == "0"
    streamed = StreamedOnnx(export_onnx(_tiny().eval(), tmp_path / "tiny.onnx", 32), 2)
    sessions = [streamed._free.get() for _ in range(streamed.streams)]
    assert [s.get_session_options().get_session_config_entry(entry) for s in sessions] == [
        "0",
        "0",
    ]


needs_bf16 = pytest.mark.skipif(
    not openvino_runs_bf16(),
    reason="OpenVINO reports no native BF16 on this CPU (needs AVX512-BF16 or AMX-BF16)",
)


@needs_bf16
@pytest.mark.slow
def test_openvino_bf16_keeps_the_answer(vd50_with_reference):
    """OpenVINO BF16 on the real reference: compiled as bf16, same top-1, logits within 5%
    of the largest (BF16 keeps 8 mantissa bits; the conversions add up over 50 layers)."""
    model, batch, eager = vd50_with_reference
    runtime = create_runtime(model, "openvino", precision="bf16")
    out = runtime(batch)
    assert runtime.inference_precisions() == {"bf16"}
    assert (out.argmax(1) == eager.argmax(1)).all()
    assert np.abs(out - eager).max() <= 5e-2 * np.abs(eager).max()


@needs_bf16
def test_openvino_bf16_export_records_and_loads_bf16(tmp_path):
    from res2net.deploy.export import export_model, load_exported

    path = export_model(_tiny(), tmp_path / "m", fmt="openvino", precision="bf16", input_size=32)
    runtime = load_exported(path)
    runtime(np.zeros((1, 3, 32, 32), dtype=np.float32))
    assert runtime.metadata["precision"] == "bf16"
    assert runtime.inference_precisions() == {"bf16"}


def test_openvino_bf16_without_native_bf16_is_a_clear_error(monkeypatch, tmp_path):
    """Where the CPU lacks BF16, asking OpenVINO for it names why instead of silently
    running FP32 (the check itself is OpenVINO's OPTIMIZATION_CAPABILITIES)."""
    import res2net.deploy.export as export
    import res2net.deploy.runtimes as runtimes

    path = export.export_model(
        _tiny(), tmp_path / "m", fmt="openvino", precision="bf16", input_size=32
    )
    monkeypatch.setattr(runtimes, "openvino_runs_bf16", lambda: False)
    monkeypatch.setattr(export, "openvino_runs_bf16", lambda: False)
    with pytest.raises(ValueError, match="runs fp32, not 'bf16' .*AVX512-BF16 or AMX-BF16"):
        create_runtime(_tiny(), "openvino", precision="bf16")
    with pytest.raises(ValueError, match="exported for bf16.*AVX512-BF16 or AMX-BF16"):
        export.load_exported(path)


def test_auto_picks_the_documented_engine(monkeypatch):
    """engine="auto" follows AUTO_ORDER: ONNX Runtime for CPU FP32, OpenVINO for BF16 where
    it runs BF16 natively, the next one when a library is missing; Predictor's default."""
    import res2net.deploy.runtimes as runtimes
    from res2net.deploy.predictor import Predictor

    assert auto_engine("cpu", "fp32") == "onnxruntime"
    assert auto_engine("cpu", "bf16") == ("openvino" if openvino_runs_bf16() else "fused")
    assert create_runtime(_tiny(), "auto").engine == "onnxruntime"
    assert Predictor(NAME, num_workers=0).runtime.engine == "onnxruntime"
    with pytest.raises(ValueError, match="'fused' \\(chosen by engine='auto'\\) on cpu runs"):
        create_runtime(_tiny(), "auto", precision="fp16")
    monkeypatch.setattr(runtimes, "available_engines", lambda device: ["eager", "openvino"])
    assert auto_engine("cpu", "fp32") == "openvino"
    monkeypatch.setattr(runtimes, "available_engines", lambda device: ["eager", "fused"])
    assert auto_engine("cpu", "bf16") == "fused"


def test_the_engine_table_is_what_create_runtime_accepts():
    """Every spec of the table: on each device it lists, create_runtime builds it at each
    precision engine_precisions gives (named as the spec) and refuses the others, naming
    those; a spec's missing device is refused; the CLI lists the table's formats."""
    from res2net.deploy.engines import ENGINE_SPECS, FORMATS

    model = _tiny()
    for spec in ENGINE_SPECS:
        assert spec.precisions and set(spec.reads) <= set(FORMATS), spec.name
        if spec.name not in available_engines("cpu"):
            assert "cpu" not in spec.precisions or not spec.installed(), spec.name
            continue
        allowed = engine_precisions(spec.name, "cpu")
        assert set(allowed) <= set(spec.precisions["cpu"]), spec.name
        for precision in ("fp32", "bf16", "fp16", "int8"):
            if precision in allowed:
                runtime = create_runtime(model, spec.name, precision=precision)
                assert runtime.engine == spec.name
                assert getattr(runtime, "precision", "fp32") == precision, spec.name
                continue
            with pytest.raises(ValueError, match=f"runs {', '.join(allowed)}, not '{precision}'"):
                create_runtime(model, spec.name, precision=precision)
    # What each engine reads: load_exported's error names the readers of the format.
    from res2net.deploy.runtimes import open_file

    with pytest.raises(ValueError, match="a onnx export cannot run in engine 'eager'; use "
                       "onnxruntime or openvino"):  # fmt: skip
        open_file("m.onnx", "onnx", "eager", "cpu", "fp32")


def test_cli_choices_come_from_the_engine_table():
    from res2net.cli import build_parser
    from res2net.deploy.engines import FORMATS, precisions_on

    export = build_parser()._subparsers._group_actions[0].choices["export"]
    (fmt,) = [a for a in export._actions if a.dest == "fmt"]
    assert fmt.choices == list(FORMATS)
    assert precisions_on("cpu") == ("fp32", "bf16", "int8")
    assert precisions_on("cuda") == ("fp32", "fp16", "bf16")


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_int8_runtime_is_the_exported_int8_file(engine, tmp_path):
    """create_runtime(precision="int8", calibration=) (what the bench times) runs the same
    INT8 file as export_model writes and load_exported loads: the same logits, bit for bit,
    and not FP32's."""
    from res2net.deploy.engines import ENGINE_TABLE
    from res2net.deploy.export import export_model, load_exported

    model = _tiny()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, 32, 32), dtype=np.float32)
    batch = rng.standard_normal((3, 3, 32, 32), dtype=np.float32)
    fmt = ENGINE_TABLE[engine].int8_format
    exported = load_exported(
        export_model(model, tmp_path / "m", fmt=fmt, int8_calibration=calib, input_size=32)
    )
    runtime = create_runtime(model, engine, precision="int8", calibration=calib)
    assert runtime.engine == engine
    out = runtime(batch)
    np.testing.assert_array_equal(out, exported(batch))
    assert not np.allclose(out, create_runtime(model, "eager")(batch), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="int8 needs calibration images"):
        create_runtime(model, engine, precision="int8")
