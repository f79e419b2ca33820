"""Run inside the reference venv: load a .pdparams into PaddleClas's own network the way
PaddleClas does (``set_state_dict(paddle.load(path))``) and write its logits.

Usage: python paddle_load_logits.py MODEL_NAME WEIGHTS.pdparams INPUTS.npy OUT.npy
The class count comes from the file's head. Fails when paddle.load refuses the file, or when
set_state_dict reports a missing or unexpected key (Paddle only warns about those), or when a
loaded array's shape or dtype differs from the network's parameter.
"""

import sys

import numpy as np
import paddle
from paddleclas_networks import network_class


def main() -> None:
    name, weights, inputs, out = sys.argv[1:5]
    state = paddle.load(weights)
    model = network_class(name)(class_num=state["out.weight"].shape[1])
    expected = model.state_dict()
    for key, value in state.items():
        assert key in expected, f"unexpected key {key}"
        assert list(value.shape) == list(expected[key].shape), (key, value.shape)
        assert value.dtype == expected[key].dtype, (key, value.dtype, expected[key].dtype)
    missing, unexpected = model.set_state_dict(state)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.load(inputs))).numpy()
    np.save(out, logits)
    print(name, "loaded", len(state), "logits", logits.shape)


if __name__ == "__main__":
    main()
