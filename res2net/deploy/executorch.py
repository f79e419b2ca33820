"""On-device inference with ExecuTorch: ``.pte`` programs lowered to the XNNPACK delegate.

ExecuTorch is PyTorch's runtime for phones and embedded boards. A ``.pte`` file is a
``torch.export`` program whose operators were handed to a backend ahead of time; here that
backend is XNNPACK, the CPU library ExecuTorch uses on Android, iOS, Linux ARM and x86.
The same file runs on a phone (ExecuTorch's Java/Kotlin or Swift/Objective-C ``Module``)
and here, through ExecuTorch's Python runtime (``executorch.runtime.Runtime``), on the
same XNNPACK kernels built for x86.

* :func:`export_executorch` writes the FP32 program, or an INT8 one quantized with PT2E
  post-training quantization and XNNPACK's quantizer (symmetric int8, weights per output
  channel, activations per tensor), calibrated on preprocessed images.
* :class:`ExecuTorchRuntime` runs a ``.pte`` file, or lowers a PyTorch model in memory.

The program takes one image (1 x 3 x H x W, a static shape, so XNNPACK plans every buffer
ahead of time, as an app classifying one camera frame at a time needs); the runtime here
runs a larger batch image by image through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from res2net.deploy.fuse import prepare_for_inference
from res2net.noise import EXECUTORCH_CPUINFO_NOISE, drop_native_lines, without_native_lines

# The batch size of the exported program (ExecuTorchRuntime runs larger batches per image).
PROGRAM_BATCH = 1
# Loading a program (and planning its XNNPACK delegate) in a child process first: mutated
# files abort the interpreter inside ExecuTorch's loader (SIGABRT from XNNPACK's compiler,
# seen with executorch 1.0), which no try/except in this process can catch.
_CHECK_PROGRAM = (
    "import sys\n"
    "from executorch.runtime import Runtime\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "Runtime.get().load_program(data).load_method('forward')\n"
)
_CHECK_TIMEOUT_S = 300


def _export_one_image(module: nn.Module, side: int) -> torch.export.ExportedProgram:
    with torch.no_grad():
        program = torch.export.export(module, (torch.zeros(PROGRAM_BATCH, 3, side, side),))
    _splits_as_slices(program.graph)
    _exact_pools_without_ceil(program.graph)
    program.graph_module.recompile()
    return program


def _splits_as_slices(graph: torch.fx.Graph) -> None:
    """Each ``torch.split`` of a block's channels as one slice per chunk, in place.

    XNNPACK's partitioner takes slices but leaves ``split`` out, and every op left out cuts
    the program into separate delegate calls (14 in a Res2Net-50 instead of one).
    """
    aten = torch.ops.aten
    for node in list(graph.nodes):
        if node.target not in (aten.split.Tensor, aten.split_with_sizes.default):
            continue
        source, sizes = node.args[0], node.args[1]
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        length = source.meta["val"].shape[dim]
        if isinstance(sizes, int):
            sizes = [min(sizes, length - start) for start in range(0, length, sizes)]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for user in list(node.users):
            index = user.args[1]
            with graph.inserting_before(user):
                chunk = graph.call_function(
                    aten.slice.Tensor, (source, dim, starts[index], starts[index] + sizes[index])
                )
            chunk.meta = dict(user.meta)
            user.replace_all_uses_with(chunk)
            graph.erase_node(user)
        graph.erase_node(node)


def _exact_pools_without_ceil(graph: torch.fx.Graph) -> None:
    """``avg_pool2d(ceil_mode=True)`` as ``ceil_mode=False`` where that is the same function.

    The ``vd`` shortcut's 2x2 pool (PaddleClas: ``ceil_mode=True``) sees even sizes at a
    224 crop, where both modes give the same windows; XNNPACK takes only the latter.
    """
    for node in graph.nodes:
        if node.target != torch.ops.aten.avg_pool2d.default or len(node.args) < 5:
            continue
        x, kernel, stride, padding, ceil_mode = node.args[:5]
        stride = stride or kernel
        height, width = node.args[0].meta["val"].shape[-2:]
        fits = all(
            (size + 2 * pad - k) % s == 0
            for size, k, s, pad in zip((height, width), kernel, stride, padding, strict=True)
        )
        if ceil_mode and fits:
            node.args = (x, kernel, stride, padding, False, *node.args[5:])


def quantize_pt2e(module: nn.Module, calibration: np.ndarray, side: int) -> nn.Module:
    """An INT8 copy of an eval-mode network by PT2E post-training quantization.

    XNNPACK's quantizer with its symmetric configuration: int8 weights per output channel,
    int8 activations per tensor with ranges observed on ``calibration`` (N x 3 x side x
    side, preprocessed), one image per call as on a phone.

    :raises ValueError: an empty calibration set, or images of another size than ``side``.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if len(calibration) == 0 or tuple(calibration.shape[1:]) != (3, side, side):
        raise ValueError(
            f"calibration must be N x 3 x {side} x {side} preprocessed images (N >= 1), got "
            f"{' x '.join(map(str, calibration.shape))}; use res2net.deploy.int8.load_calibration"
        )
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer().set_global(config)
    graph = _export_one_image(module, side).module()
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in calibration:
            observed(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    return convert_pt2e(observed)


def lower_to_xnnpack(module: nn.Module, side: int) -> bytes:
    """The ``.pte`` program (bytes) of an eval-mode network, delegated to XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(
        _export_one_image(module, side), partitioner=[XnnpackPartitioner()]
    )
    return edge.to_executorch().buffer


def export_executorch(
    module: nn.Module,
    path: str | os.PathLike,
    side: int,
    calibration: np.ndarray | None = None,
) -> Path:
    """Write ``module`` (eval mode, already rewritten) as an XNNPACK ``.pte`` program.

    :param side: the square input size the program is exported at.
    :param calibration: preprocessed images; quantizes to INT8 (:func:`quantize_pt2e`).
    """
    path = Path(path)
    with warnings.catch_warnings():
        # ExecuTorch 1.5's exir reads its own data files with importlib.resources' legacy
        # read_text/open_text/read_binary, each a DeprecationWarning addressed to ExecuTorch.
        warnings.filterwarnings("ignore", r".* is deprecated\. Use files\(\) instead")
        if calibration is not None:
            module = quantize_pt2e(module, calibration, side)
        path.write_bytes(lower_to_xnnpack(module, side))
    return path


def export_metadata(side: int) -> dict[str, Any]:
    """What the metadata of a ``.pte`` export says about its input: one image at a time."""
    return {
        "input": {"shape": [PROGRAM_BATCH, 3, side, side], "layout": "NCHW", "dtype": "float32"},
        "batch_sizes": [PROGRAM_BATCH],
    }


def check_program_file(path: str | os.PathLike) -> None:
    """Load ``path``'s program in a short-lived child process, so that a file which crashes
    ExecuTorch's loader kills the child, not the caller.

    :raises ExportedModelError: the child failed, crashed or hung; the message names the
        file and how the loader ended.
    """
    from res2net.card import ExportedModelError

    command = [sys.executable, "-c", _CHECK_PROGRAM, str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportedModelError(
            f"{path}: executorch cannot load this file: its loader did not finish in "
            f"{_CHECK_TIMEOUT_S} s; export it again"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        how = f"crashed ({signal.Signals(-done.returncode).name})"
    else:
        stderr = without_native_lines(done.stderr, EXECUTORCH_CPUINFO_NOISE)
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        how = f"failed ({lines[-1][:300] if lines else f'exit {done.returncode}'})"
    raise ExportedModelError(
        f"{path}: executorch cannot load this file: its loader {how}; the file is damaged "
        "or not a program written by `res2net export --format executorch`; export it again"
    )


class ExecuTorchRuntime:
    """A ``.pte`` program in ExecuTorch's Python runtime (XNNPACK on this CPU).

    The program takes one image; a batch of N runs as N calls, one image after another (the
    logits are the same as one batched call's). XNNPACK uses its own thread pool, one
    thread per core by default.

    :param model: the path of a ``.pte`` file, or a PyTorch model (rewritten, then lowered
        to FP32 in memory once per input size, on first use).
    :param device: ``"cpu"`` only: XNNPACK is a CPU library.
    """

    engine = "executorch"

    def __init__(self, model: nn.Module | str | os.PathLike, device: str = "cpu") -> None:
        if device != "cpu":
            raise ValueError(f"the executorch engine runs on the CPU (device='cpu'), not {device}")
        self.device = device
        self._methods: dict[tuple[int, ...], Any] = {}
        self._source: nn.Module | None = None
        self._keep: list[tuple[bytes, Any]] = []
        if isinstance(model, nn.Module):
            self._source = prepare_for_inference(model, channels_last=False)
        else:
            check_program_file(model)
            method = self._load(Path(model).read_bytes())
            self._methods[tuple(method.metadata.input_tensor_meta(0).sizes())[1:]] = method

    def _load(self, program: bytes) -> Any:
        with warnings.catch_warnings():
            # executorch/extension/pybindings/portable_lib.py warns on import that its API is
            # experimental (an ExperimentalWarning); nothing a user of this class can act on.
            warnings.filterwarnings("ignore", "This API is experimental")
            from executorch.runtime import Runtime

        # Planning the XNNPACK delegate prints ExecuTorch's CPU probing to descriptor 2.
        with drop_native_lines(EXECUTORCH_CPUINFO_NOISE):
            loaded = Runtime.get().load_program(program)
            # The runtime reads the program from this buffer and keeps no reference of its
            # own: the bytes and the Program must live as long as the method.
            self._keep.append((program, loaded))
            return loaded.load_method("forward")

    def _method_for(self, image_shape: tuple[int, ...]) -> Any:
        if image_shape in self._methods:
            return self._methods[image_shape]
        if self._source is None:
            (expected,) = self._methods
            raise ValueError(
                f"this .pte program takes images of 3 x {expected[1]} x {expected[2]}, got "
                f"{' x '.join(map(str, image_shape))}; preprocess with the crop its metadata names"
            )
        channels, height, width = image_shape
        if channels != 3 or height != width:
            raise ValueError(f"executorch runtime expects 3 x S x S images, got {image_shape}")
        self._methods[image_shape] = self._load(lower_to_xnnpack(self._source, height))
        return self._methods[image_shape]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or len(batch) == 0:
            raise ValueError(f"expected an N x 3 x H x W batch (N >= 1), got {batch.shape}")
        method = self._method_for(tuple(batch.shape[1:]))
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        rows = [method.execute([image[None]])[0] for image in images]
        return torch.cat(rows).numpy()
