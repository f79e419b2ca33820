"""Broken and hostile training configs: `error: FILE: line N: ...`, exit 2, no traceback."""

from __future__ import annotations

import pytest

from res2net.cli import main
from res2net.engine.config import ConfigError, load_config

CASES = {
    "syntax": ("model:\n  name: Res2Net50_26w_4s\n  num_classes: [1, 2\n", "line 4"),
    "tag": ("model:\n  name: !!python/object:os.system ls\n", "line 2"),
    "tab": ("model:\n\tname: x\n", "line 2"),
    "deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "config"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_yaml_errors_name_file_and_line(tmp_path, case):
    text, words = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and (words in message or case == "deep"), message


def test_non_utf8_config_is_a_config_error(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"model:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize(
    "override,words",
    [("optim.lr=[1,", "override 'optim.lr=[1,': line 1"), ("optim..lr=1", "empty key part"),
     ("=3", "empty key part"), ("model.name=!!python/name:os.system", "override")],
)  # fmt: skip
def test_bad_overrides_are_config_errors(override, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        load_config(None, [override])


def test_cli_train_prints_error_with_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(CASES["syntax"][0])
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: line 4:" in err and "Traceback" not in err
    good = tmp_path / "empty.yaml"
    good.write_text("")
    assert main(["train", "--config", str(good), "optim.lr=[oops"]) == 2
    assert "error: " in capsys.readouterr().err
