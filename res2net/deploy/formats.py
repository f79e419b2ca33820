"""The export formats and their file suffixes, without torch: the CLI lists them in --help."""

from __future__ import annotations

FORMATS = {
    "onnx": ".onnx",
    "openvino": ".xml",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "executorch": ".pte",
}
