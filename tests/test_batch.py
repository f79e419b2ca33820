"""Batch prediction (res2net.batch): parts, resume, Ray Data with a killed actor, eval on Ray.

The peer of every check is the single-process ``res2net predict`` / ``res2net eval``. The
model is a four-channel Res2Net-50-vd with fixed random weights whose batch-norm statistics
were measured on the photos, so different photos get different answers. The Ray tests share
one local instance with 2 CPUs on 127.0.0.1, and each has a timeout so that a hang fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray  # the res2net[scale] extra, in [all]: these tests must run in CI
import torch
from conftest import PHOTOS, TINY_ARCH

from res2net.batch import batch_predict, read_rows
from res2net.batch.parts import drop_duplicates, part_files, write_part
from res2net.cli import main as cli_main

pytestmark = pytest.mark.timeout(150)

PREPROCESS = {"resize_short": 72, "crop": 64, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A `res2net train`-style export: 10 classes, weights fixed by the seed."""
    from res2net.data.images import load_image
    from res2net.data.preprocess import Preprocess
    from res2net.data.transforms import eval_transform
    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net, Res2NetConfig

    torch.manual_seed(0)
    model = Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10)
    pre = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in PREPROCESS.items()})
    photos = torch.stack([eval_transform(pre)(load_image(p)) for p in PHOTOS])
    for m in model.modules():  # cumulative statistics over the photos
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(photos)
    meta = {
        "arch": TINY_ARCH,
        "model": None,
        "num_classes": 10,
        "classes": [f"class{i}" for i in range(10)],
        "preprocess": {**PREPROCESS, "style": "paddle"},
    }
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    return export_weights(model.eval(), path, {"res2net_training": json.dumps(meta)})


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """24 distinct images (the photos, flipped and cropped) and one corrupt file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("collection")
    for i, photo in enumerate(PHOTOS):
        image = Image.open(photo).convert("RGB")
        for k in range(4):
            variant = image.transpose(Image.FLIP_LEFT_RIGHT) if k % 2 else image
            w, h = variant.size
            variant.crop((0, 0, w - 20 * k, h - 10 * k)).save(root / f"img{i}_{k}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def expected(tiny_weights, photo_dir) -> dict[str, dict]:
    """What `res2net predict` (one process, in memory) answers for each source."""
    from res2net.data.images import collect_images
    from res2net.deploy.predictor import Predictor

    predictions = Predictor(None, tiny_weights, engine="eager").predict(collect_images([photo_dir]))
    return {p.source: p.to_dict() for p in predictions}


def _assert_same(rows: list[dict], expected: dict[str, dict]) -> None:
    """Every source exactly once, each with the single-process answer (scores to 2e-5:
    Ray's actors run the model with another thread count)."""
    sources = [r["source"] for r in rows]
    assert sorted(sources) == sorted(expected), "missing or duplicated sources"
    for row in rows:
        ref = expected[row["source"]]
        assert row["class_ids"] == ref["class_ids"], row["source"]
        assert row["labels"] == ref["labels"]
        np.testing.assert_allclose(row["scores"], ref["scores"], atol=2e-5)
        assert row["error"] == ref["error"]
    assert len({tuple(r["class_ids"]) for r in rows}) > 1, "the model answers alike: no check"
    broken = [r for r in rows if r["error"]]
    assert len(broken) == 1 and "broken.jpg" in broken[0]["error"]


def test_parts_overwrite_themselves_and_duplicates_are_dropped(tmp_path):
    out = tmp_path / "results.parquet"
    out.mkdir()
    row = {"class_ids": [1], "scores": [0.5], "labels": ["x"], "error": None}
    rows = [{**row, "source": s} for s in ("a", "b", "c")]
    first = write_part(out, rows[:2], "parquet")
    assert write_part(out, rows[:2], "parquet") == first  # a retried block
    write_part(out, rows[1:], "parquet")  # "b" again, in a block split differently
    assert len(part_files(out, "parquet")) == 2
    assert drop_duplicates(out, "parquet") == 1
    # pyarrow reads the folder as one table, as it reads Spark's and Ray's outputs.
    assert sorted(pq.read_table(out).column("source").to_pylist()) == ["a", "b", "c"]
    assert sorted(r["source"] for r in read_rows(out)) == ["a", "b", "c"]


def test_single_process_output_equals_predict(expected, tiny_weights, photo_dir, tmp_path):
    for suffix in ("parquet", "jsonl"):
        out = tmp_path / f"results.{suffix}"
        args = ["predict", str(photo_dir), "--weights", str(tiny_weights), "--output", str(out)]
        assert cli_main([*args, "--rows-per-part", "7", "--engine", "eager"]) == 1
        assert len(part_files(out, suffix)) == 4  # 25 images, 7 per part
        _assert_same(read_rows(out), expected)
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "results.parquet")  # a real reader of the format
    assert len(frame) == 25 and frame["error"].notna().sum() == 1


def test_resume_classifies_only_what_is_missing(
    capsys, expected, tiny_weights, photo_dir, tmp_path
):
    out = tmp_path / "results.parquet"
    some = sorted(photo_dir.glob("img[0-2]_*.png"))
    first = batch_predict(some, out, weights=tiny_weights, rows_per_part=5)
    assert first["written"] == 12
    (out / ".part-crashed.parquet.1234.tmp").write_bytes(b"half a part")  # a crash's leftover
    args = ["predict", str(photo_dir), "--weights", str(tiny_weights), "--output", str(out)]
    assert cli_main(args) == 2, "an existing output needs --resume"
    assert "--resume" in capsys.readouterr().err
    again = batch_predict([photo_dir], out, weights=tiny_weights, resume=True, rows_per_part=5)
    assert (again["written"], again["skipped"], again["failed"]) == (13, 12, 1)
    assert not list(out.glob(".*.tmp"))
    _assert_same(read_rows(out), expected)


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance for this module: 2 CPUs, loopback only, no dashboard."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level="warning",
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_ray_output_equals_single_process(expected, local_ray, tiny_weights, photo_dir, tmp_path):
    out = tmp_path / "results.parquet"
    summary = batch_predict(
        [photo_dir], out, weights=tiny_weights, ray="local", num_actors=2, rows_per_part=6
    )
    assert (summary["written"], summary["failed"], summary["duplicates_dropped"]) == (25, 1, 0)
    _assert_same(read_rows(out), expected)


def test_ray_refuses_a_pool_that_starves_decoding(local_ray, tiny_weights, photo_dir, tmp_path):
    with pytest.raises(ValueError, match="cpus_per_actor"):
        batch_predict(
            [photo_dir],
            tmp_path / "r.parquet",
            weights=tiny_weights,
            ray="local",
            num_actors=2,
            cpus_per_actor=0.75,
        )


def test_an_actor_runs_its_model_on_the_cpus_it_reserves(monkeypatch):
    """An actor's exported model (OpenVINO, ONNX Runtime) gets the actor's threads, not every
    core: before, two actors on two cores compiled two threads each."""
    from res2net.batch.ray_jobs import _set_threads
    from res2net.deploy.runtimes import openvino_config

    monkeypatch.setenv("RES2NET_THREADS", "7")  # restored afterwards; the actor overrides it
    threads = torch.get_num_threads()
    try:
        _set_threads(0.5)
        assert torch.get_num_threads() == 1
        assert openvino_config()["INFERENCE_NUM_THREADS"] == 1
        _set_threads(2.0)
        assert openvino_config()["INFERENCE_NUM_THREADS"] == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_an_actor_does_not_pin_its_threads_to_the_first_cores(monkeypatch):
    """OpenVINO pins a compiled model's threads to the first cores by default, so two actors
    of one thread each both ran on core 0 (Ray at half speed). With fewer threads than
    cores, the compiled model (read back from OpenVINO) must not pin; on every core it may."""
    import openvino as ov

    from res2net.bench.limits import openvino_matmuls
    from res2net.deploy.runtimes import openvino_config

    _, model, _ = openvino_matmuls(64)[0]
    monkeypatch.setenv("RES2NET_THREADS", "1")
    compiled = ov.Core().compile_model(model, "CPU", openvino_config("LATENCY", "fp32"))
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    monkeypatch.delenv("RES2NET_THREADS")
    assert "ENABLE_CPU_PINNING" not in openvino_config("LATENCY", "fp32")


def _actor_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and cmdline.startswith(b"ray::") and b"_PredictAndWrite" in cmdline:
            pids.append(int(proc.name))
    return pids


def test_killed_actor_loses_and_repeats_nothing(
    expected, local_ray, tiny_weights, photo_dir, tmp_path
):
    """SIGKILL one actor's process once the first part is written; Ray restarts it and
    re-runs its block, and every source is in the output exactly once."""
    out = tmp_path / "results.parquet"
    result: dict = {}

    def job():
        try:
            result["summary"] = batch_predict(
                [photo_dir],
                out,
                weights=tiny_weights,
                ray="local",
                num_actors=2,
                rows_per_part=1,
                batch_size=1,
            )
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    worker = threading.Thread(target=job)
    worker.start()
    deadline = time.monotonic() + 120
    while not part_files(out, "parquet") and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.01)
    pids = _actor_pids()
    assert pids and worker.is_alive(), "the job ended before an actor could be killed"
    parts_before = len(part_files(out, "parquet"))
    os.kill(pids[0], signal.SIGKILL)
    worker.join(timeout=120)
    assert not worker.is_alive(), "the job did not finish after the actor was killed"
    assert "error" not in result, result.get("error")
    assert parts_before < 25, "the kill came after the last part"
    assert pids[0] not in _actor_pids()
    _assert_same(read_rows(out), expected)


def test_eval_on_ray_equals_eval(capsys, local_ray, tiny_weights, photo_dir, tmp_path):
    data = tmp_path / "labelled"
    for i, image in enumerate(sorted(photo_dir.glob("*.png"))):
        (data / f"class{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, data / f"class{i % 3}" / image.name)
    shutil.copy(photo_dir / "broken.jpg", data / "class1")
    results = []
    for extra in ([], ["--ray", "--actors", "2"]):
        args = ["eval", "--data", str(data), "--weights", str(tiny_weights), "--json", *extra]
        if extra:
            assert cli_main(args) == 0
        else:  # the broken image is skipped with a warning naming it, in this process
            with pytest.warns(UserWarning, match="skipping corrupt image .*broken.jpg"):
                assert cli_main([*args, "--num-workers", "0"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    single, on_ray = results
    assert (on_ray["top1"], on_ray["top5"], on_ray["images"]) == (
        single["top1"],
        single["top5"],
        single["images"],
    )
    assert on_ray["skipped"] == single["skipped"] == 1
    assert on_ray["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert 0 < single["top1"] < single["top5"] < 1, "top-1/top-5 must discriminate"


def test_cli_flags_that_need_output_or_misread_an_address(capsys, photo_dir, tmp_path):
    out = str(tmp_path / "r.parquet")
    assert cli_main(["predict", str(photo_dir), "--resume"]) == 2
    assert "--output" in capsys.readouterr().err
    # nargs="?": `--ray FOLDER` would take the folder for a cluster address.
    assert cli_main(["predict", "x.png", "--output", out, "--ray", str(photo_dir)]) == 2
    assert "put --ray after the images" in capsys.readouterr().err
    assert cli_main(["predict", str(photo_dir), "--output", str(tmp_path / "r.csv")]) == 2
    assert "*.parquet or *.jsonl" in capsys.readouterr().err
