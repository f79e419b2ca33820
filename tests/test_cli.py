"""The command line as a new user meets it: every file one command writes is usable by the
next, the commands explain themselves (--help with defaults and choices), and the model
table is quick and fits a terminal."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import timm
from conftest import PHOTOS

from res2net.cli import build_parser
from res2net.cli import main as cli_main
from res2net.models import counting
from res2net.models.registry import get_entry, model_info

# -- res2net models ---------------------------------------------------------------------


def test_shipped_counts_equal_a_fresh_count_of_every_model():
    """The table's figures ship with the package; counting each network again on the meta
    device (torch's own flop counter) gives them exactly, and every registered network has
    its entry, so no user ever waits for a count."""
    from res2net.models.registry import list_models

    shipped = counting.shipped_counts()
    configs = {counting.shape_key(get_entry(name).config): name for name in list_models()}
    assert set(configs) <= set(shipped), "run scripts/count_models.py after adding a model"
    for key, name in configs.items():
        params, gflops = counting.count_network(get_entry(name).config)
        assert shipped[key][0] == params == model_info(name)["params"], name
        assert shipped[key][1] == pytest.approx(gflops, rel=1e-9), name


def test_shipped_params_equal_timms_network():
    name = "res2net50_26w_4s"
    theirs = timm.create_model(name, pretrained=False)
    ours = model_info(name)["params"]
    assert ours == sum(p.numel() for p in theirs.parameters() if p.requires_grad)


def test_unregistered_counts_are_cached(tmp_path, monkeypatch):
    """A network outside the registry (a training file's own class count) is counted once;
    a later process reads the cache file instead of counting."""
    monkeypatch.setenv("RES2NET_CACHE", str(tmp_path))
    monkeypatch.setattr(counting, "_memory", {})
    config = get_entry("res2net50_26w_4s").config
    params, gflops = counting.count_model(config, 224, 10)
    cached = json.loads((tmp_path / counting.COUNTS_FILE).read_text())
    assert cached[counting.count_key(config, 224, 10)] == [params, gflops]

    def no_count(*args, **kwargs):
        raise AssertionError("counted again despite the cache")

    monkeypatch.setattr(counting, "_memory", {})
    monkeypatch.setattr(counting, "count_network", no_count)
    assert counting.count_model(config, 224, 10) == (params, gflops)


def test_count_key_names_torch_version_and_shape():
    config = get_entry("Res2Net50_vd_26w_4s").config
    import torch

    key = counting.count_key(config)
    assert torch.__version__.split("+")[0] in key and '"width": 26' in key
    assert key != counting.count_key(config, 160) != counting.count_key(config, 224, 10)


def test_models_needs_no_torch_and_no_cache(tmp_path):
    """What made the command slow was counting and importing torch: on a fresh machine
    (empty cache folder) `res2net models` (and building every subcommand's parser) imports
    neither."""
    import subprocess
    import sys

    code = (
        "import sys; from res2net.cli import main; assert main(['models']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "RES2NET_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Res2Net50_vd_26w_4s" in proc.stdout
    assert not (tmp_path / counting.COUNTS_FILE).exists()


def test_models_table_fits_100_columns(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RES2NET_CACHE", str(tmp_path))  # leave the user's cache alone
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert "Res2Net200_vd_26w_4s_ssld" in out and "https://" not in out
    assert cli_main(["models", "--wide", "--family", "official"]) == 0
    wide = capsys.readouterr().out
    assert "https://huggingface.co/timm/res2net50d" in wide


# -- a file written by `res2net train` is enough for every command ----------------------

ARCH = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A training export as `res2net train` writes it (its metadata, its key names), with
    BatchNorm statistics made non-trivial so outputs depend on the image; and the network."""
    import torch

    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net, Res2NetConfig

    torch.manual_seed(0)
    net = Res2Net(Res2NetConfig(**ARCH), num_classes=len(CLASSES))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    meta = {
        "arch": ARCH, "model": None, "num_classes": len(CLASSES), "classes": CLASSES,
        "preprocess": {"resize_short": 64, "crop": 56, "mean": [0.5] * 3, "std": [0.5] * 3},
    }  # fmt: skip
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    path = export_weights(net, folder / "final.safetensors", {"res2net_training": json.dumps(meta)})
    return path, net.eval()


def _photo_batch(path):
    from res2net.deploy.predictor import Predictor

    predictor = Predictor(None, path, num_workers=0)
    return np.stack([predictor.preprocess(p).numpy() for p in PHOTOS[:2]])


def test_export_from_a_training_file_alone(trained, tmp_path, capsys):
    import torch

    from res2net.deploy.export import load_exported

    path, net = trained
    out = tmp_path / "tiny.onnx"
    assert cli_main(["export", "--weights", str(path), "--output", str(out)]) == 0, capsys
    runtime = load_exported(out)  # ONNX Runtime reads the file
    batch = _photo_batch(path)
    assert batch.shape[-1] == 56  # the file's own preprocessing
    with torch.no_grad():
        expected = net(torch.from_numpy(batch)).numpy()
    got = runtime(batch)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert runtime.metadata["labels"] == CLASSES
    assert runtime.metadata["preprocess"]["crop"] == 56


def test_bench_from_a_training_file_alone(trained, capsys):
    path, net = trained
    args = ["bench", "--weights", str(path), "--engine", "eager", "--batch-sizes", "1",
            "--warmup", "0", "--iters", "1", "--json"]  # fmt: skip
    assert cli_main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    side = 56  # the fixture's crop: timed and counted there, not at the registry's 224
    _, gflops = counting.count_network(net.config, side, len(CLASSES))
    assert row["model"] == str(path) and row["gflops"] == pytest.approx(gflops, abs=1e-3)
    assert row["input_side"] == side != 224


def test_serve_from_a_training_file_alone(trained, tmp_path):
    """`res2net serve --weights FILE` as a subprocess; its answers are the network's."""
    import signal

    import httpx
    import torch

    from tests.test_server import launch

    path, net = trained
    proc, ports = launch(["--weights", str(path), "--log-level", "warning"], tmp_path / "log")
    try:
        files = [("image", (p.name, p.read_bytes())) for p in PHOTOS[:2]]
        url = f"http://127.0.0.1:{ports['rest']}/v1/classify?topk=2"
        answer = httpx.post(url, files=files, timeout=120).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    with torch.no_grad():
        expected = net(torch.from_numpy(_photo_batch(path))).topk(2).indices.tolist()
    assert [p["class_ids"] for p in answer["predictions"]] == expected
    assert answer["predictions"][0]["labels"] == [CLASSES[i] for i in expected[0]]


def test_export_says_it_downloads_and_offers_random_weights(capsys, tmp_path):
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["export"]
                         .format_help().split())  # fmt: skip
    assert "PUBLISHED weights, downloaded" in help_text and "--random-weights" in help_text
    out = tmp_path / "r.onnx"
    args = ["export", "--model", "Res2Net50_26w_4s", "--random-weights", "--output", str(out)]
    assert cli_main(args) == 0
    assert "RANDOM weights" in capsys.readouterr().err and out.is_file()


def test_offline_export_names_the_weights_flag(tmp_path, monkeypatch, capsys):
    """No network: the published-weights error tells the CLI user about --weights."""
    monkeypatch.setenv("RES2NET_CACHE", str(tmp_path))
    monkeypatch.setenv("RES2NET_WEIGHTS_URL", "http://127.0.0.1:9/none")  # port 9: refused
    assert cli_main(["export", "--model", "Res2Net50_26w_4s", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--weights path/to/file" in err and "--random-weights" in err


# -- help and predict's text --------------------------------------------------------------


def _subparsers():
    return build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_help_shows_every_default(command):
    parser = _subparsers()[command]
    text = " ".join(parser.format_help().split()).replace("- ", "-")  # lines wrap at hyphens
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
            assert action.help, (command, action.dest)  # argparse prints nothing without one
            help_text = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "default" in help_text, (command, action.dest)
            assert help_text in text


def test_help_lists_the_choices():
    from res2net.deploy.export import FORMATS
    from res2net.deploy.runtimes import available_engines

    helps = {name: " ".join(p.format_help().split()) for name, p in _subparsers().items()}
    for command in ("predict", "serve", "bench"):
        assert ", ".join(available_engines()) in helps[command], command
    assert "{" + ",".join(FORMATS) + "}" in helps["export"]
    assert "{fp32,bf16,fp16}" in helps["predict"] and "fp32,bf16,int8" in helps["bench"]


def test_predict_text_has_a_header_and_warns_once(capsys):
    argv = ["predict", str(PHOTOS[0]), "--model", "Res2Net50_26w_4s", "--random-weights"]
    code = cli_main([*argv, "--topk", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and err.count("RANDOM weights") == 1
    header, source, *scores = out.splitlines()
    assert header.startswith("# Res2Net50_26w_4s") and "score" in header
    assert source == str(PHOTOS[0]) and len(scores) == 2


def test_predict_usage_error_comes_without_the_warning(capsys):
    assert cli_main(["predict", str(PHOTOS[0])]) == 2  # neither --model nor --weights
    err = capsys.readouterr().err
    assert "no --model given" in err and "RANDOM" not in err


# -- training output ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`res2net train` on the tiny config for two epochs, as a log file would see it."""
    import yaml
    from conftest import tiny_config

    from res2net.data.datasets import render_digits

    digits = tmp_path_factory.mktemp("digits")
    render_digits(digits, size=16)
    for split, keep in (("train", 12), ("val", 6)):  # a few per class: the output is the test
        for folder in (digits / split).iterdir():
            for extra in sorted(folder.glob("*.png"))[keep:]:
                extra.unlink()
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(digits, out, train={"progress": True}, output={"tensorboard": False})
    path = out / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return digits, out, path


def test_train_prints_one_line_per_epoch_and_the_result_in_words(cli_run, capfd):
    from res2net.engine.evaluate import evaluate_folder

    digits, out, config = cli_run
    assert cli_main(["train", "--config", str(config)]) == 0
    stdout, stderr = capfd.readouterr()
    epochs = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    for word in ("train loss", "val top-1", "top-5", "lr", "img/s"):
        assert all(word in line for line in epochs), word
    assert "\r" not in stderr, "a progress bar on a file that is not a terminal"
    # The result in words is the final weights' real accuracy on the held-out images.
    result = evaluate_folder(digits / "val", weights=out / "final.safetensors", num_workers=0)
    assert f"validation: top-1 {result['top1']:.2%}" in stdout
    assert f"weights: {out / 'final.safetensors'}" in stdout


def test_train_json_is_one_line(cli_run, capfd):
    _, out, config = cli_run
    assert cli_main(["train", "--config", str(config), "schedule.epochs=1", "--json"]) == 0
    stdout = capfd.readouterr().out
    (line,) = stdout.splitlines()
    assert json.loads(line)["final_weights"] == str(out / "final.safetensors")


def test_resuming_a_finished_run_answers_without_torch(cli_run, capfd):
    """`train --resume` after the last epoch took 16 s (torch, model, data, checkpoint) to
    find nothing to do; the finished run's record answers without importing torch. A
    different config or a newer checkpoint resumes for real."""
    import subprocess
    import sys

    from res2net.engine.config import config_to_dict, load_config
    from res2net.engine.run_folder import LAST, finished_run

    _, out, config = cli_run
    assert cli_main(["train", "--config", str(config), "--json"]) == 0
    trained = json.loads(capfd.readouterr().out)
    code = (
        "import sys; from res2net.cli import main; "
        f"assert main(['train', '--config', {str(config)!r}, '--resume', '--json']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == trained

    cfg = load_config(config)
    assert finished_run(out, config_to_dict(cfg), out / LAST) is not None
    longer = load_config(config, ["schedule.epochs=3"])
    assert finished_run(out, config_to_dict(longer), out / LAST) is None
    os.utime(out / LAST)  # a checkpoint written after the record: resume it
    assert finished_run(out, config_to_dict(cfg), out / LAST) is None


def test_loss_plot_is_log_scaled_when_the_first_epoch_dwarfs_the_rest(tmp_path, monkeypatch):
    import matplotlib.figure

    from res2net.engine.report import MetricsLog

    scales = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: scales.append(
            fig.axes[0].get_yscale())
    )  # fmt: skip
    for first in (20.0, 1.2):  # 10x the rest, then an ordinary run
        log = MetricsLog(tmp_path, tensorboard=False)
        for epoch, loss in enumerate([first, 1.0, 0.8, 0.7], 1):
            log.add({"epoch": epoch, "step": epoch, "lr": 0.1, "train_loss": loss})
        log.plot()
    assert scales == ["log", "linear"]
