"""Run inside the reference venv: export a PaddleClas Res2Net as an inference model and run
it in Paddle Inference.

Usage: python paddle_inference_model.py MODEL_NAME WEIGHTS.pdparams INPUTS.npy OUT_DIR FORMAT
FORMAT is ``json`` (Paddle 3's PIR program, the default of paddle.jit.save) or ``pdmodel``
(the Paddle 2.x ProgramDesc, written with the PIR API switched off). Writes
OUT_DIR/inference.{json|pdmodel} + inference.pdiparams, as PaddleClas's
tools/export_model.py does (paddle.jit.save of the network, input [None, 3, 224, 224]), and
OUT_DIR/logits.npy: what Paddle Inference computes from those two files on INPUTS.
"""

import os
import sys

# Must be set before paddle is imported: it chooses the program format jit.save writes.
os.environ["FLAGS_enable_pir_api"] = "0" if sys.argv[5] == "pdmodel" else "1"  # noqa: SIM112

import numpy as np  # noqa: E402
import paddle  # noqa: E402
from paddle import inference  # noqa: E402
from paddleclas_networks import network_class  # noqa: E402


def export(name: str, weights: str, prefix: str) -> str:
    state = paddle.load(weights)
    model = network_class(name)(class_num=state["out.weight"].shape[1])
    missing, unexpected = model.set_state_dict(state)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
    paddle.jit.save(model, prefix, input_spec=spec)
    program = prefix + "." + sys.argv[5]
    assert os.path.exists(program), os.listdir(os.path.dirname(prefix))
    return program


def infer(program: str, params: str, inputs: np.ndarray) -> np.ndarray:
    config = inference.Config(program, params)
    config.disable_gpu()
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(inputs.shape))
    handle.copy_from_cpu(inputs)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def main() -> None:
    name, weights, inputs, out_dir = sys.argv[1:5]
    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, "inference")
    program = export(name, weights, prefix)
    logits = infer(program, prefix + ".pdiparams", np.load(inputs))
    np.save(os.path.join(out_dir, "logits.npy"), logits)
    print(name, sys.argv[5], "logits", logits.shape, sorted(os.listdir(out_dir)))


if __name__ == "__main__":
    main()
