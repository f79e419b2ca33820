"""The command line as a new user meets it: every file one command writes is usable by the
next, the commands explain themselves (--help with defaults and choices), and the model
table is quick and fits a terminal."""

from __future__ import annotations

import json

import pytest
import timm

from res2net.cli import main as cli_main
from res2net.models import counting
from res2net.models.registry import get_entry, model_info

# -- res2net models ---------------------------------------------------------------------


def test_cached_counts_equal_a_fresh_count_and_timm(tmp_path, monkeypatch):
    """The table's figures are counted from the network once and cached; the cached ones
    are what a fresh count and timm's own network give."""
    monkeypatch.setenv("RES2NET_CACHE", str(tmp_path))
    monkeypatch.setattr(counting, "_memory", {})
    name = "res2net50_26w_4s"
    config = get_entry(name).config
    info = model_info(name)
    cached = json.loads((tmp_path / counting.COUNTS_FILE).read_text())[counting.count_key(config)]
    params, gflops = counting.count_network(config)
    assert cached[0] == params == info["params"]
    assert cached[1] == pytest.approx(gflops, rel=1e-9) and info["gflops"] == round(gflops, 3)
    theirs = timm.create_model(name, pretrained=False)
    assert params == sum(p.numel() for p in theirs.parameters() if p.requires_grad)

    # A later call (another process: memory cleared) reads the file instead of counting.
    def no_count(*args, **kwargs):
        raise AssertionError("counted again despite the cache")

    monkeypatch.setattr(counting, "_memory", {})
    monkeypatch.setattr(counting, "count_network", no_count)
    assert model_info(name)["params"] == params


def test_count_key_names_torch_version_and_shape():
    config = get_entry("Res2Net50_vd_26w_4s").config
    import torch

    key = counting.count_key(config)
    assert torch.__version__.split("+")[0] in key and '"width": 26' in key
    assert key != counting.count_key(config, 160) != counting.count_key(config, 224, 10)


def test_models_table_fits_100_columns(capsys):
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert "Res2Net200_vd_26w_4s_ssld" in out and "https://" not in out
    assert cli_main(["models", "--wide", "--family", "official"]) == 0
    wide = capsys.readouterr().out
    assert "https://huggingface.co/timm/res2net50d" in wide
