"""Batch prediction and evaluation of large image collections, in one process or on Ray.

:func:`batch_predict` writes one row per image into a folder of Parquet/JSONL parts and
can resume; ``ray=...`` runs it on a Ray cluster (the optional ``res2net[scale]`` extra).
:func:`evaluate_on_ray` is ``res2net eval`` on Ray. Ray itself is imported only when used.
"""

from __future__ import annotations

from res2net.batch.parts import read_rows
from res2net.batch.predict import batch_predict
from res2net.batch.ray_jobs import evaluate_on_ray

__all__ = ["batch_predict", "evaluate_on_ray", "read_rows"]
