"""PaddleClas inference models read without Paddle, against PaddleClas's export and Paddle
Inference (``.venv-ref``): both program formats, the name map, and hostile files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PADDLE_NETWORKS, PHOTOS, assert_logits_match, run_reference

from res2net.builder import create_model
from res2net.cli import main
from res2net.weights.errors import WeightFileError
from res2net.weights.io import read_weight_file
from res2net.weights.paddle import paddle_names
from res2net.weights.paddle_inference import find_inference_model, read_inference_model

VD50 = "Res2Net50_vd_26w_4s"
PLAIN50 = "Res2Net50_26w_4s"


@pytest.fixture(scope="module")
def inference_model(paddle_reference, photo_batch, tmp_path_factory):
    """Factory: (NAME, FORMAT) -> (directory of PaddleClas's export, Paddle Inference's
    logits on the photos), from PaddleClas's randomized reference weights."""
    done: dict[tuple[str, str], tuple[Path, np.ndarray]] = {}

    def get(name: str, fmt: str) -> tuple[Path, np.ndarray]:
        if (name, fmt) not in done:
            weights, _ = paddle_reference(name)
            out = tmp_path_factory.mktemp(f"{name}_{fmt}")
            run_reference("paddle_inference_model.py", name, weights, photo_batch[1], out, fmt)
            done[name, fmt] = (out, np.load(out / "logits.npy"))
        return done[name, fmt]

    return get


def _logits(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(batch).numpy()


@pytest.mark.parametrize(("name", "fmt"), [(VD50, "json"), (VD50, "pdmodel"), (PLAIN50, "json")])
def test_inference_model_logits_equal_paddle_inference(inference_model, photo_batch, name, fmt):
    folder, paddle_logits = inference_model(name, fmt)
    program = folder / f"inference.{fmt}"
    assert program.is_file()
    # The folder, the parameters file and the program file all name the same model.
    for path in (folder, folder / "inference.pdiparams", program):
        model = create_model(name, pretrained=str(path))
        assert_logits_match(_logits(model, photo_batch[0]), paddle_logits)


def test_parameter_names_equal_paddleclas_table(tmp_path):
    """The name map against the table paddle.save stores (StructuredToParameterName@@),
    taken from PaddleClas's own networks, for every PaddleClas Res2Net."""
    out = tmp_path / "names.json"
    run_reference("paddle_parameter_names.py", out, *PADDLE_NETWORKS)
    tables = json.loads(out.read_text())
    for name in PADDLE_NETWORKS:
        model = create_model(name, pretrained=False)
        structured = paddle_names(model)
        parameters = paddle_names(model, parameter_names=True)
        assert {structured[k]: parameters[k] for k in structured} == tables[name], name


def test_cli_convert_and_predict_take_an_inference_model(inference_model, tmp_path, capsys):
    folder, paddle_logits = inference_model(VD50, "json")
    out = tmp_path / "from_inference.safetensors"
    assert main(["convert", str(folder), str(out), "--model", VD50]) == 0
    state, fmt, _ = read_weight_file(folder)
    assert fmt == "paddle-inference" and "res2a_branch2a_weights" in state
    image = PHOTOS[0]
    capsys.readouterr()
    assert main(["predict", str(image), "--model", VD50, "--weights", str(folder)]) == 0
    assert str(image) in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["json", "pdmodel"])
def test_an_inference_model_alone_is_a_model(inference_model, photo_batch, fmt, capsys):
    """As PaddleClas deploys it (deploy/python/predict_cls.py takes only the folder): no model
    name, the architecture read off the parameters, Paddle Inference's logits."""
    from res2net.deploy.predictor import Predictor

    folder, paddle_logits = inference_model(VD50, fmt)
    predictor = Predictor(folder, engine="eager")
    assert predictor.model_name == VD50 and predictor.num_classes == 1000
    assert_logits_match(predictor.predict_batch(photo_batch[0].numpy()), paddle_logits)
    capsys.readouterr()
    assert main(["predict", str(PHOTOS[0]), "--model", str(folder / "inference.pdiparams")]) == 0
    out = capsys.readouterr().out
    assert str(PHOTOS[0]) in out and VD50 in out


def test_convert_refuses_another_architecture(inference_model, tmp_path, capsys):
    folder, _ = inference_model(VD50, "json")
    code = main(["convert", str(folder), str(tmp_path / "x.safetensors"), "--model", PLAIN50])
    err = capsys.readouterr().err
    assert code == 2 and "looks like weights for Res2Net50_vd_26w_4s" in err


# -- hostile and broken files -------------------------------------------------------------


@pytest.fixture
def copy_of(inference_model, tmp_path):
    def get(fmt: str) -> Path:
        folder, _ = inference_model(VD50, fmt)
        dest = tmp_path / fmt
        shutil.copytree(folder, dest)
        return dest

    return get


def test_truncated_and_padded_parameters_are_named(copy_of):
    folder = copy_of("json")
    params = folder / "inference.pdiparams"
    data = params.read_bytes()
    params.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"inference.pdiparams: truncated or crafted"):
        read_weight_file(folder)
    params.write_bytes(data + b"\0" * 8)
    with pytest.raises(WeightFileError, match=r"8 bytes follow the program's 437 parameters"):
        read_weight_file(folder)
    params.write_bytes(b"")
    with pytest.raises(WeightFileError, match=r"needs 4 bytes at offset 0"):
        read_weight_file(folder)


def test_cli_names_a_broken_inference_model_in_one_line(copy_of, tmp_path, capsys):
    folder = copy_of("json")
    params = folder / "inference.pdiparams"
    params.write_bytes(params.read_bytes()[:1000])
    out = tmp_path / "x.safetensors"
    assert main(["convert", str(folder), str(out), "--model", VD50]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.endswith("left") and "inference.pdiparams: truncated or crafted" in err
    assert not out.exists()


def test_size_claims_are_checked_before_allocation(copy_of):
    folder = copy_of("pdmodel")
    params = folder / "inference.pdiparams"
    data = bytearray(params.read_bytes())
    data[4:12] = (1 << 40).to_bytes(8, "little")  # the first tensor's LoD level count
    params.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match=r"claims 1,099,511,627,776 LoD levels"):
        read_weight_file(folder)
    data[4:12] = bytes(8)
    data[16:20] = (1 << 30).to_bytes(4, "little")  # its description's size
    params.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match=r"1,073,741,824-byte description"):
        read_weight_file(folder)


def test_parameters_of_another_program_are_refused(copy_of, inference_model):
    folder = copy_of("json")
    other, _ = inference_model(PLAIN50, "json")
    shutil.copy(other / "inference.pdiparams", folder / "inference.pdiparams")
    with pytest.raises(WeightFileError, match=r"the files are not of one export"):
        read_weight_file(folder)


def test_broken_programs_are_named(copy_of):
    folder = copy_of("json")
    program = folder / "inference.json"
    program.write_text('{"base_code": {"magic": "not pir"}}')
    with pytest.raises(WeightFileError, match=r"inference.json: not a Paddle PIR program"):
        read_weight_file(folder)
    program.write_text("[" * 100_000)
    with pytest.raises(WeightFileError, match=r"inference.json: not a Paddle PIR program"):
        read_weight_file(folder)
    folder = copy_of("pdmodel")
    program = folder / "inference.pdmodel"
    program.write_bytes(program.read_bytes()[:5000])
    with pytest.raises(WeightFileError, match=r"inference.pdmodel: not a Paddle ProgramDesc"):
        read_weight_file(folder)
    program.write_bytes(b"\x0a\xff\xff\xff\xff\x0f")  # a block claiming 4 GiB
    with pytest.raises(WeightFileError, match=r"runs past the end"):
        read_weight_file(folder)


def test_incomplete_or_ambiguous_pairs_are_named(copy_of, tmp_path):
    folder = copy_of("pdmodel")
    shutil.copy(folder / "inference.pdmodel", folder / "inference.json")
    with pytest.raises(WeightFileError, match=r"holds both inference.json and inference.pdmodel"):
        read_weight_file(folder)
    (folder / "inference.json").unlink()
    (folder / "inference.pdmodel").rename(tmp_path / "lonely.pdmodel")
    with pytest.raises(WeightFileError, match=r"no program beside it"):
        read_weight_file(folder / "inference.pdiparams")
    with pytest.raises(WeightFileError, match=r"lonely.pdmodel: the program's parameters"):
        read_weight_file(tmp_path / "lonely.pdmodel")
    assert find_inference_model(tmp_path / "nothing_here") is None


def test_reader_returns_the_programs_names_in_full(inference_model):
    folder, _ = inference_model(VD50, "pdmodel")
    arrays = read_inference_model(find_inference_model(folder))
    model = create_model(VD50, pretrained=False)
    assert set(arrays) == set(paddle_names(model, parameter_names=True).values())
    assert all(a.dtype == np.float32 for a in arrays.values())
