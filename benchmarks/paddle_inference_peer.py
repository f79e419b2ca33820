"""Peer timing: PaddleClas's Res2Net in Paddle Inference with oneDNN (MKLDNN), 2 threads.

Runs in the PaddleClas interpreter (paddlepaddle + paddleclas), not in ours:
    python paddle_inference_peer.py MODEL BATCHES WARMUP ITERS
Saves the model as PaddleClas's export does (jit.save, input [None, 3, 224, 224]), loads it
with paddle.inference as its Python predictor does, and prints one JSON line:
[{"batch": N, "times_ms": [...], "peak_rss_mib": M}, ...].
"""

import importlib
import json
import os
import sys
import tempfile
import time

import numpy as np
import paddle
from paddle import inference


def build(name):
    arch = name.replace("_ssld", "")
    module = "res2net_vd" if "_vd_" in arch else "res2net"
    zoo = importlib.import_module("paddleclas.ppcls.arch.backbone.model_zoo." + module)
    return getattr(zoo, arch)()


def peak_rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def main():
    name, sizes, warmup, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    threads = int(os.environ.get("RES2NET_THREADS", len(os.sched_getaffinity(0))))
    model = build(name)
    model.eval()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "inference")
        spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec), prefix)
        config = inference.Config(
            prefix + ".json" if os.path.exists(prefix + ".json") else prefix + ".pdmodel",
            prefix + ".pdiparams",
        )
        config.disable_gpu()
        config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(threads)
        config.switch_ir_optim(True)
        config.disable_glog_info()
        predictor = inference.create_predictor(config)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        for batch in map(int, sizes.split(",")):
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype("float32")
            times = []
            for i in range(warmup + iters):
                start = time.perf_counter()
                handle.copy_from_cpu(x)
                predictor.run()
                predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
            out.append({"batch": batch, "times_ms": times, "peak_rss_mib": peak_rss_mib()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
