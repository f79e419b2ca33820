"""Every number a user types is checked where it is parsed; every user mistake is one line
and exit 2; one flag name per concept; help shows each default once."""

from __future__ import annotations

import json
import math

import pytest
from conftest import PHOTOS

from res2net.batch.parts import prepare_output, read_part
from res2net.checks import check_number
from res2net.cli import build_parser
from res2net.cli import main as cli_main
from res2net.cli.output import print_json

# -- the one number check -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value,kw",
    [(math.nan, {}), (math.inf, {}), (-math.inf, {"high": 0}), (True, {}), ("3", {}),
     (-3, {"low": 1}), (5, {"high": 4}), (1.5, {"integer": True}), (None, {}),
     (10**400, {}), (10**400, {"integer": True, "high": 4096})],  # float(10**400) overflows
)  # fmt: skip
def test_check_number_refuses(value, kw):
    with pytest.raises(ValueError, match="^batch_size must be"):
        check_number("batch_size", value, **kw)


def test_check_number_accepts_and_normalises():
    assert check_number("n", 4.0, low=1, integer=True) == 4
    assert isinstance(check_number("n", 4.0, integer=True), int)
    assert check_number("x", 0, low=0, high=1) == 0.0
    assert check_number("x", 10**30, low=0) == 1e30


# -- numeric flags: refused by argparse, one line, exit 2 ---------------------------------

IMAGE = str(PHOTOS[0])
# A registered name runs random weights only when asked for (--random-weights).
RANDOM_PREDICT = ["predict", IMAGE, "--model", "Res2Net50_26w_4s", "--random-weights"]
BAD_FLAGS = [
    # --num-classes -3 used to build a 2045-class head; --max-pixels -5 failed every image
    # with exit 1; --cpus-per-actor nan reached Ray.
    (RANDOM_PREDICT, "--num-classes", "-3"),
    (RANDOM_PREDICT, "--max-pixels", "-5"),
    (RANDOM_PREDICT, "--topk", "0"),
    (RANDOM_PREDICT, "--cpus-per-actor", "nan"),
    (RANDOM_PREDICT, "--rows-per-part", "0"),
    (RANDOM_PREDICT, "--actors", "-2"),
    (["eval", "--data", "x", "--model", "m"], "--batch-size", "0"),
    (["eval", "--data", "x", "--model", "m"], "--workers", "-1"),
    (["export", "--model", "Res2Net50_26w_4s"], "--num-classes", "-3"),
    (["digits", "out"], "--size", "0"),
    (["digits", "out"], "--val-fraction", "1.5"),
    (["digits", "out"], "--seed", "-1"),
    (["bench"], "--batch-sizes", "1,0"),
    (["bench"], "--iters", "0"),
    (["bench"], "--warmup", "inf"),
]


@pytest.mark.parametrize("argv,flag,value", BAD_FLAGS)
def test_bad_numbers_are_usage_errors(argv, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main([*argv, f"{flag}={value}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    (line,) = err.splitlines()  # one line: no usage block before it
    assert line.startswith(f"res2net {argv[0]}: error: argument ") and line.endswith("--help)")
    assert "argument " in line and flag in line and "must be" in line, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--config=--"], ["export", "--weights=--"]])
def test_a_double_dash_value_is_a_usage_error(argv, capsys):
    # Was: argparse handed the command [] and it raised TypeError (found by hypothesis).
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2
    assert "expected one value, got '--'" in capsys.readouterr().err


def test_eval_takes_predicts_flag_name_and_its_old_one():
    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("predict", "eval"):
        head = ["x"] if command == "predict" else ["--data", "x"]
        new = sub[command].parse_args([*head, "--num-workers", "3"])
        old = sub[command].parse_args([*head, "--workers", "3"])
        assert new.num_workers == old.num_workers == 3


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_help_shows_each_default_once(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.default in (None, False, "==SUPPRESS=="):
            continue
        text = formatter._expand_help(action)
        # "(0.5) (default: 0.5)" was printed for --cpus-per-actor
        assert text.count("default") == 1 and f"({action.default})" not in text, (command, text)


# -- user mistakes beyond argparse: one line, exit 2 --------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def test_output_under_a_file_is_a_usage_error(tmp_path, capsys):
    # Was: NotADirectoryError traceback, exit 1.
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["predict", IMAGE, "--model", "Res2Net50_26w_4s", "--random-weights", "--output"]
    assert cli_main([*argv, str(blocker / "r.parquet")]) == 2
    assert f"{blocker / 'r.parquet'}" in _one_line_error(capsys)
    with pytest.raises(ValueError, match="cannot make this folder"):
        prepare_output(blocker / "r.jsonl", resume=False)


@pytest.mark.parametrize(
    "line,words",
    [('{"class_ids": [1]}\n', "lacks source"), ("[1, 2]\n", "JSON object"),
     ("{not json\n", "not JSON"), ('{"source": 3}\n', "'source' must be a string")],
)  # fmt: skip
def test_resume_on_a_broken_jsonl_part_names_it(tmp_path, line, words, capsys):
    # Was: KeyError / TypeError tracebacks from read_part.
    out = tmp_path / "r.jsonl"
    out.mkdir()
    part = out / "part-0.jsonl"
    part.write_text('{"source": "a", "class_ids": [], "scores": [], "labels": [], "error": null}\n'
                    + line)  # fmt: skip
    with pytest.raises(ValueError, match=f"part-0.jsonl, line 2: .*{words}"):
        read_part(part, "jsonl", ["source"])
    argv = [*RANDOM_PREDICT, "--output", str(out), "--resume"]
    assert cli_main(argv) == 2
    assert "line 2" in _one_line_error(capsys)


def test_unreachable_object_store_is_a_usage_error(capsys):
    # Was: pyarrow's OSError traceback. The endpoint is a closed port on this machine, so
    # the test reaches no network (the reported case was s3:// while offline).
    uri = "s3://bucket/x.png?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    argv = ["predict", uri, *RANDOM_PREDICT[2:], "--output", "unused.jsonl"]
    assert cli_main(argv) == 2
    assert "s3://bucket/x.png" in _one_line_error(capsys)


def test_ray_address_without_a_cluster_is_a_usage_error(monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    from res2net.batch.ray_jobs import connect

    def no_cluster(*args, **kwargs):  # what ray.init(address="auto") raises with none running
        raise ConnectionError("Could not find any running Ray instance.")

    # A real "auto" would join any Ray another process on this machine runs.
    monkeypatch.setattr(ray, "init", no_cluster)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match="Ray address 'auto': no Ray cluster answers"):
        connect("auto")


def test_json_output_refuses_nan_and_writes_nothing(capsys):
    with pytest.raises(ValueError, match="NaN or infinite"):
        print_json({"scores": [0.5, math.nan]})
    assert capsys.readouterr().out == ""
    print_json({"scores": [0.5]})
    assert json.loads(capsys.readouterr().out) == {"scores": [0.5]}


def test_jsonl_parts_refuse_nan_scores(tmp_path):
    from res2net.batch.parts import write_part

    row = {"source": "a.png", "class_ids": [1], "scores": [math.nan], "labels": [], "error": None}
    with pytest.raises(ValueError, match="a.png: the model's scores are NaN"):
        write_part(tmp_path, [row], "jsonl")
    assert list(tmp_path.iterdir()) == []  # no part, and no temp file left behind


@pytest.mark.parametrize(
    "kw", [{"num_classes": -3}, {"max_pixels": -5}, {"topk": 0}, {"batch_size": math.nan}]
)
def test_predictor_names_the_bad_argument(kw):
    from res2net.deploy.predictor import Predictor

    (name,) = kw
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Predictor("Res2Net50_26w_4s", **kw)
