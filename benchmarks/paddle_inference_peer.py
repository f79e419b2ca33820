"""Peer: PaddleClas's Res2Net in Paddle Inference with oneDNN (MKLDNN), as a timing server.

Runs in the PaddleClas interpreter (paddlepaddle + paddleclas), not in ours, and stays
alive so that ``benchmarks/peers.py`` can time it in the same turns as our engines:

    python paddle_inference_peer.py MODEL [--weights FILE.pdparams]

Saves the model as PaddleClas's export does (``paddle.jit.save``, input [None, 3, 224,
224]), loads it with ``paddle.inference`` as PaddleClas's Python predictor does
(``deploy/python/predict_cls.py``: oneDNN on, IR optimisation on, CPU math threads set),
prints ``{"ready": true}`` and then answers one JSON line per request line on stdin:

* ``{"op": "time", "batch": B, "warmup": W, "iters": N}`` -> ``{"times_ms": [...]}``: W
  untimed then N timed calls (copy in, run, copy out) on a fixed random B x 3 x 224 x 224
  batch; the clock runs here, so the pipe is not in the figure.
* ``{"op": "run", "shape": [...], "data": BASE64}`` (float32, C order) -> the logits the
  same way: what Paddle Inference computes for a given batch.
* ``{"op": "memory"}`` -> ``{"peak_rss_mib": M}`` (this process's VmHWM).
* ``{"op": "quit"}`` -> ``{}``, then exit.
"""

import argparse
import base64
import importlib
import json
import os
import sys
import tempfile
import time

import numpy as np
import paddle
from paddle import inference


def build(name, weights):
    arch = name.replace("_ssld", "")
    module = "res2net_vd" if "_vd_" in arch else "res2net"
    zoo = importlib.import_module("paddleclas.ppcls.arch.backbone.model_zoo." + module)
    model = getattr(zoo, arch)()
    if weights:
        model.set_state_dict(paddle.load(weights))
    model.eval()
    return model


def peak_rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def predictor_of(model, tmp, threads):
    prefix = os.path.join(tmp, "inference")
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec), prefix)
    graph = prefix + ".json" if os.path.exists(prefix + ".json") else prefix + ".pdmodel"
    config = inference.Config(graph, prefix + ".pdiparams")
    config.disable_gpu()
    config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(threads)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return inference.create_predictor(config)


class Server:
    def __init__(self, predictor):
        self.predictor = predictor
        self.input = predictor.get_input_handle(predictor.get_input_names()[0])
        self.output = predictor.get_output_handle(predictor.get_output_names()[0])

    def call(self, x):
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return self.output.copy_to_cpu()

    def time(self, batch, warmup, iters):
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        for _ in range(warmup):
            self.call(x)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            self.call(x)
            times.append((time.perf_counter() - start) * 1e3)
        return {"times_ms": times}

    def run(self, shape, data):
        x = np.frombuffer(base64.b64decode(data), dtype=np.float32).reshape(shape)
        out = np.ascontiguousarray(self.call(np.ascontiguousarray(x)), dtype=np.float32)
        return {"shape": list(out.shape), "data": base64.b64encode(out.tobytes()).decode()}

    def answer(self, request):
        op = request.get("op")
        if op == "time":
            return self.time(int(request["batch"]), int(request["warmup"]), int(request["iters"]))
        if op == "run":
            return self.run(request["shape"], request["data"])
        if op == "memory":
            return {"peak_rss_mib": peak_rss_mib()}
        return {"error": f"unknown op {op!r}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--weights", help="a PaddleClas .pdparams (default: random weights)")
    args = ap.parse_args()
    threads = int(os.environ.get("RES2NET_THREADS", len(os.sched_getaffinity(0))))
    # Answers go to the real stdout only; anything Paddle prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(predictor_of(build(args.model, args.weights), tmp, threads))
        print(json.dumps({"ready": True}), file=out, flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("op") == "quit":
                print("{}", file=out, flush=True)
                break
            print(json.dumps(server.answer(request)), file=out, flush=True)


if __name__ == "__main__":
    main()
