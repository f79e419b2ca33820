"""Every engine gives eager FP32's answer on the real photos.

Weights: the real PaddleClas network with randomized BatchNorm (``paddle_reference``), so the
logits depend on the image and a wrong conversion would change them. Eager itself is checked
against PaddleClas's logits first, so the reference is the real one, not our own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PHOTOS, assert_logits_match

from res2net.deploy.runtimes import available_engines, create_runtime
from res2net.models.registry import create_model

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
