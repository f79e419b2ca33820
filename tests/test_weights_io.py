"""Weight files: safe .pdparams reading, strict loading, conversion to .safetensors."""

from __future__ import annotations

import io
import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import res2net
from res2net.builder import load_weights
from res2net.weights.io import WeightFileError, read_weight_file
from res2net.weights.paddle import UnsafePickleError, read_pdparams


@pytest.fixture(scope="module")
def vd50(paddle_reference):
    return paddle_reference("Res2Net50_vd_26w_4s")


class _RunsCommand:
    """Unpickling this calls os.system: what a malicious weight file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_command_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pdparams"
    payload = {"conv1._conv.weight": np.zeros(3, np.float32), "x": _RunsCommand(marker)}
    evil.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"refused to load (posix|os)\.system"):
        read_pdparams(evil)
    model = res2net.create_model("Res2Net50_26w_4s")
    with pytest.raises(UnsafePickleError, match="evil.pdparams"):
        load_weights(model, evil)
    assert not marker.exists()


def test_plain_pickle_would_have_run_it(tmp_path):
    """Control for the test above: the payload really does run under plain pickle."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsCommand(marker), protocol=4)
    code = "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, check=True)
    assert marker.exists()


def test_pdparams_reads_paddle_file(vd50):
    arrays = read_pdparams(vd50[0])
    assert len(arrays) == 437 and "StructuredToParameterName@@" not in arrays
    assert arrays["out.weight"].shape == (2048, 1000)


def test_truncated_and_non_pickle_files(vd50, tmp_path):
    data = vd50[0].read_bytes()
    cut = tmp_path / "cut.pdparams"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pdparams: unreadable or truncated"):
        read_weight_file(cut)
    text = tmp_path / "notes.pdparams"
    text.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="notes.pdparams: unknown weight format"):
        read_weight_file(text)
    empty = tmp_path / "empty.pdparams"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pdparams: file is empty"):
        read_weight_file(empty)
    with pytest.raises(WeightFileError, match="no such weight file"):
        read_weight_file(tmp_path / "absent.safetensors")


def test_wrong_model_lists_keys_and_names_the_right_one(vd50):
    model = res2net.create_model("Res2Net101_vd_26w_4s")
    with pytest.raises(WeightFileError) as err:
        load_weights(model, vd50[0])
    msg = str(err.value)
    assert "looks like weights for Res2Net50_vd_26w_4s" in msg
    # Hundreds of keys misfit: counted, and only the first few named.
    missing = re.search(r"(\d+) missing, (\d+) unexpected key\(s\)", msg)
    assert missing and int(missing[1]) > 400, msg
    assert "Missing: layer3." in msg and "layer3.22.conv1.weight" not in msg
    assert len(msg.splitlines()) < 10


def test_mismatch_of_a_training_export_says_drop_the_model_name(tmp_path):
    """The demo's 10-class width-8 network given to a registered name: summarised, and told
    that the file brings its own architecture."""
    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net, Res2NetConfig

    arch = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}
    meta = {"res2net_training": json.dumps({"arch": arch, "num_classes": 10})}
    small = Res2Net(Res2NetConfig(**arch), num_classes=10)
    path = export_weights(small, tmp_path / "f.safetensors", meta)
    model = res2net.create_model("Res2Net50_vd_26w_4s")
    with pytest.raises(WeightFileError) as err:
        load_weights(model, path)
    msg = str(err.value)
    theirs = small.state_dict()
    misfit = [k for k, v in model.state_dict().items() if v.shape != theirs[k].shape]
    assert len(misfit) > 300
    assert f"{len(misfit)} misshaped, 0 missing, 0 unexpected" in msg
    assert "leave out --model" in msg and len(msg.splitlines()) < 15


def test_misshaped_keys_are_listed(vd50):
    model = res2net.create_model("Res2Net50_vd_26w_4s", num_classes=10)
    with pytest.raises(WeightFileError) as err:
        load_weights(model, vd50[0])
    msg = str(err.value)
    assert "fc.weight: (1000, 2048) vs (10, 2048)" in msg and "skip_head=True" in msg


def test_head_skipped_for_other_num_classes(vd50, photo_batch):
    full = res2net.create_model("Res2Net50_vd_26w_4s", pretrained=str(vd50[0]))
    model = res2net.create_model("Res2Net50_vd_26w_4s", num_classes=10)
    report = load_weights(model, vd50[0], skip_head=True)
    assert report.skipped == ["fc.weight", "fc.bias"] and report.naming == "paddleclas"
    for key, value in full.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, model.state_dict()[key]), key


def test_convert_to_safetensors_round_trip(vd50, photo_batch, tmp_path):
    from res2net.cli import main

    dst = tmp_path / "vd50.safetensors"
    assert main(["convert", str(vd50[0]), str(dst), "--model", "Res2Net50_vd_26w_4s"]) == 0
    _, fmt, meta = read_weight_file(dst)
    assert fmt == "safetensors" and meta["model"] == "Res2Net50_vd_26w_4s"
    a = res2net.create_model("Res2Net50_vd_26w_4s", pretrained=str(vd50[0]))
    b = res2net.create_model("Res2Net50_vd_26w_4s", pretrained=str(dst))
    with torch.no_grad():
        np.testing.assert_array_equal(a(photo_batch[0]).numpy(), b(photo_batch[0]).numpy())
    np.testing.assert_allclose(a(photo_batch[0][:1]).detach().numpy(), vd50[1][:1], atol=1e-4)


def test_convert_cli_reports_bad_file(tmp_path, capsys):
    from res2net.cli import main

    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"\x80\x04junk")
    assert main(["convert", str(bad), str(tmp_path / "o.safetensors"), "--model",
                 "Res2Net50_26w_4s"]) == 2  # fmt: skip
    assert "bad.pdparams" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_import_is_light():
    code = "import sys, res2net; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unsafe_pickle_error_is_an_unpickling_error():
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
    with pytest.raises(UnsafePickleError):
        read_pdparams_bytes = pickle.dumps(io.StringIO, protocol=4)
        path = __import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "x.pdparams"
        path.write_bytes(read_pdparams_bytes)
        read_pdparams(path)
