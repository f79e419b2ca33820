"""Run inside the reference venv (paddlepaddle + paddleclas): build a PaddleClas Res2Net,
make its activations image-dependent, save it with paddle.save and write its logits.

Usage: python paddle_model.py MODEL_NAME INPUTS.npy OUT_DIR [--seed N]
Writes OUT_DIR/MODEL_NAME.pdparams and OUT_DIR/MODEL_NAME.logits.npy.

Random init alone makes a deep net's outputs nearly image-independent, so a parity check on
them could not fail. Here every BatchNorm gets random affine parameters, then one train-mode
pass over the inputs (momentum 0) sets its running statistics to the inputs' own.
"""

import argparse
import os

import numpy as np
import paddle
from paddleclas_networks import network_class

# BatchNorm randomization: gamma range, beta std, gamma range of residual-branch ends.
GAMMA_LO, GAMMA_HI, BETA_STD, RESID_LO, RESID_HI = (
    float(v) for v in os.environ.get("REF_BN", "0.5,1.5,0.3,0.2,0.6").split(",")
)

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paddle.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = network_class(args.model)()
    named = [(n, m) for n, m in model.named_sublayers() if isinstance(m, paddle.nn.BatchNorm)]
    bns = [m for _, m in named]
    for name, bn in named:
        c = bn.weight.shape[0]
        # Residual branches end in conv2's BN; smaller scales there keep a 200-layer net
        # well-conditioned, so float32 rounding stays far below the tolerance.
        lo, hi = (
            (RESID_LO, RESID_HI) if name.endswith("conv2._batch_norm") else (GAMMA_LO, GAMMA_HI)
        )
        bn.weight.set_value(rng.uniform(lo, hi, c).astype("float32"))
        bn.bias.set_value(rng.normal(0.0, BETA_STD, c).astype("float32"))
        bn._momentum = 0.0
    model.out.bias.set_value(rng.normal(0.0, 0.1, model.out.bias.shape).astype("float32"))
    x = paddle.to_tensor(np.load(args.inputs))
    model.train()
    with paddle.no_grad():
        model(x)
    model.eval()
    with paddle.no_grad():
        logits = model(x).numpy()
    os.makedirs(args.out_dir, exist_ok=True)
    paddle.save(model.state_dict(), os.path.join(args.out_dir, args.model + ".pdparams"))
    np.save(os.path.join(args.out_dir, args.model + ".logits.npy"), logits)
    print(args.model, "bns", len(bns), "logits", logits.shape, float(np.abs(logits).max()))


if __name__ == "__main__":
    main()
