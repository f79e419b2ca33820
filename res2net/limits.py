"""The bounds on every number a file may give us, in one place.

A model card (an export's ``.json``, a training export's header) describes its own model,
but it comes from a file, so nothing it says is allocated before it is checked against
these limits. Each bound sits well above anything a published Res2Net or a sane fine-tune
needs and well below what would exhaust a machine: a crop of 4096 took ``predict`` to
4.8 GB, and an architecture declared in an export card asked for terabytes.

This module imports nothing: every layer may read it.
"""

from __future__ import annotations

# Class count of a classifier head (ImageNet-21k has 21,841; 100k leaves room).
MAX_CLASSES = 100_000
# Eval preprocessing: the short side is resized to at most this, the center crop is at
# most MAX_CROP. Published Res2Nets use 224 (256 resize); 1024 is ~21x their pixels.
MAX_RESIZE = 2048
MAX_CROP = 1024
# Per-field architecture bounds, then the one that matters: the parameter count, estimated
# in closed form before anything is built (the largest registered network has 76 M).
MAX_WIDTH = 256
MAX_SCALES = 16
MAX_CARDINALITY = 64
MAX_PARAMS = 400_000_000
# Normalization: std divides the pixels, so it must be clearly positive; both stay in a
# range that a [0, 1] (or 0-255) pixel scale can use.
MIN_STD = 1e-3
MAX_ABS_MEAN_STD = 1e3
# Any one tensor of an exported ONNX graph, for one image (256 MB as float32): a
# Res2Net-50 at crop 224 peaks at 0.8 M elements, at crop 1024 at 17 M.
MAX_TENSOR_ELEMENTS = 64 << 20
# An OpenVINO IR's ``.xml`` is parsed whole by OpenVINO's XML reader: a Res2Net-200 INT8 IR
# is a few MB with a few thousand layers, so these leave 10x room and stop a file that
# would exhaust memory in the parser alone.
MAX_IR_XML_BYTES = 64 << 20
MAX_IR_LAYERS = 50_000
# Registered names and exported model names: plain file-name-safe words.
MAX_NAME_LENGTH = 128
