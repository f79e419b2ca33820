"""Every subcommand, fed hostile values for its flags (hypothesis), ends with exit 0, 1 or 2,
never a traceback, and without growing the process's memory.

Each command gets a base argument list that fails cheaply after parsing (an input that does
not exist, an output under a file), so a value that parses still runs the command's checks
without loading a model or doing real work; what a drawn value could still start (a
benchmark, a calibration) is stubbed. ``--ray`` is left out: any value names a cluster
to join (tests/test_cli_input.py covers one that is not there).
"""

from __future__ import annotations

import contextlib
import io
import resource

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from res2net.cli import build_parser
from res2net.cli import main as cli_main
from res2net.engine.config import _RANGES

HOSTILE = [
    "nan", "NaN", "inf", "-inf", "1e309", "-1", "0", "-0", "1.5", "1e-320", "0x10", "1_0",
    "99999999999999999999", "9" * 5000, "", " ", "abc", "\x00", "é", "-", "--",
    "/dev/zero", "/etc/passwd/x", "../../x", "1,0", ",", "2,-3",
]  # fmt: skip
VALUES = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
NEVER = {"--ray", "--help", "--version"}  # joins a cluster / prints and exits 0 by design
GROWTH_MB = 400  # a model is not built here; decoding /dev/zero would pass this


def _commands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def _value_flags(parser) -> list[str]:
    """The long option of every flag that takes a value."""
    return sorted(
        action.option_strings[-1]
        for action in parser._actions
        if action.option_strings and action.nargs != 0 and not NEVER & set(action.option_strings)
    )


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, list[str]]:
    """Per command, arguments that make it stop early once its values are checked."""
    tmp = tmp_path_factory.mktemp("hostile")
    blocker = tmp / "file"
    blocker.write_text("")
    empty = tmp / "empty"
    empty.mkdir()
    missing = str(tmp / "missing.safetensors")
    config = tmp / "cfg.yaml"
    config.write_text(f"model: {{name: Res2Net50_26w_4s}}\noutput: {{dir: {blocker}/run}}\n")
    return {
        "models": ["--cache-dir", str(tmp / "cache")],
        "convert": [missing, str(tmp / "out.safetensors"), "--model", "Res2Net50_26w_4s"],
        "download": ["NoSuchModel", "--cache-dir", str(tmp / "cache")],
        "predict": [str(empty), "--model", "Res2Net50_26w_4s", "--random-weights"],
        "serve": ["--weights", missing],
        "train": ["--config", str(config)],
        "eval": ["--data", str(empty), "--weights", missing],
        "digits": [str(blocker / "digits")],
        "export": ["--weights", missing],
        "bench": ["--weights", missing],
    }


@pytest.fixture(autouse=True)
def no_real_work(monkeypatch):
    """A drawn ``--weights=`` (empty) replaces a base's missing file, and bench then times a
    real model, or calibrates on a drawn folder such as "/": both are stubbed here, after
    the command's own checks have run."""
    import res2net.bench.latency
    import res2net.deploy.int8

    def no_calibration(*args, **kwargs):
        raise ValueError("calibration is not run in this test")

    monkeypatch.setattr(res2net.bench.latency, "run_benchmark", lambda *a, **k: [])
    monkeypatch.setattr(res2net.deploy.int8, "load_calibration", no_calibration)


def _run(argv: list[str]) -> tuple[int, str]:
    """``res2net ARGV`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def _check(argv: list[str]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, err = _run(argv)  # an exception escaping main is a traceback: the test fails
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert code in (0, 1, 2), (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    assert grown_mb < GROWTH_MB, (argv, grown_mb)


COMMANDS = sorted(_commands())


def test_every_command_is_walked(bases):
    assert set(bases) == set(_commands())  # a new subcommand needs a base here


@pytest.mark.parametrize("command", COMMANDS)
def test_each_flag_with_each_hostile_number(command, bases):
    """Every flag that takes a value, alone, with each non-number or out-of-range number."""
    for flag in _value_flags(_commands()[command]):
        for value in ("nan", "inf", "-inf", "-1", "0", "1e309", "99999999999999999999", "x"):
            _check([command, *bases[command], f"{flag}={value}"])


@pytest.mark.parametrize("command", COMMANDS)
def test_hostile_flag_values(command, bases):
    """A few flags at once, with anything as their values."""
    flags = _value_flags(_commands()[command])
    if not flags:
        pytest.skip(f"{command} takes no flag values")
    pairs = st.lists(st.tuples(st.sampled_from(flags), VALUES), min_size=1, max_size=3)

    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(pairs=pairs)
    def walk(pairs):
        _check([command, *bases[command], *(f"{flag}={value}" for flag, value in pairs)])

    walk()


def test_hostile_config_values(bases):
    """``train KEY=VALUE`` with every numeric config key and hostile values."""
    keys = sorted(k for k in _RANGES if not k.startswith("distill."))

    @settings(max_examples=25, deadline=None, database=None)
    @given(key=st.sampled_from(keys), value=VALUES)
    def walk(key, value):
        _check(["train", *bases["train"], f"{key}={value}"])

    walk()
