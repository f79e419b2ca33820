"""Training on real data (scikit-learn's digits): learning, evaluation, resume, faults, DDP.

Everything runs on CPU with a tiny Res2Net-50 (width 4) on 16x16 renderings of the digits.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH, tiny_config
from safetensors.torch import load_file

import res2net
from res2net.cli import main as cli_main
from res2net.data.datasets import folder_samples, render_digits
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import eval_transform
from res2net.engine import losses
from res2net.engine import train as train_module
from res2net.engine.checkpoint import load_checkpoint
from res2net.engine.config import config_from_dict
from res2net.engine.train import NonFiniteLossError, train
from res2net.models.res2net import Res2Net, Res2NetConfig
from res2net.weights.io import load_weights

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
# One thread per process: the same arithmetic in every run (exact comparisons), and runs
# that share the 2 CI cores do not fight over them.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    render_digits(root, size=16)
    return root


def _subset(digits: Path, n: int, name: str, split: str = "train") -> Path:
    """A PaddleClas list file with the first ``n`` images of ``split`` in a balanced order."""
    samples, _ = folder_samples(digits / split)
    by_class: dict[int, list[Path]] = {}
    for path, label in samples:
        by_class.setdefault(label, []).append(path)
    order = [(by_class[c][i], c) for i in range(n // 10 + 1) for c in sorted(by_class)][:n]
    listing = digits / name
    listing.write_text("".join(f"{p.relative_to(digits / split)} {c}\n" for p, c in order))
    return listing


def _small_val(digits: Path) -> Path:
    return _subset(digits, 50, "val50.txt", split="val")


@pytest.fixture(scope="module")
def demo_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    return train(config_from_dict(tiny_config(digits, out)))


def test_short_demo_beats_chance_on_held_out_digits(demo_run):
    last = demo_run.history[-1]
    # 10 balanced classes: chance is 0.10.
    assert last["val_top1"] > 0.5, demo_run.history
    assert demo_run.history[-1]["train_loss"] < demo_run.history[0]["train_loss"]
    out = demo_run.out_dir
    for name in ("final.safetensors", "best.safetensors", "last.pt", "metrics.csv", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr"} <= set(header)


def test_eval_command_equals_direct_topk(demo_run, digits):
    weights = demo_run.out_dir / "final.safetensors"
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert (
            cli_main(
                [
                    "eval",
                    "--weights",
                    str(weights),
                    "--data",
                    str(digits / "val"),
                    "--json",
                    "--workers",
                    "0",
                ]
            )
            == 0
        )
    reported = json.loads(buf.getvalue())

    model = Res2Net(Res2NetConfig(**TINY_ARCH), num_classes=10)
    load_weights(model, weights)
    model.eval()
    transform = eval_transform(Preprocess(16, 16, mean=tuple(MEAN), std=tuple(STD)))
    samples, _ = folder_samples(digits / "val")
    from PIL import Image

    images = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in samples])
    labels = torch.tensor([label for _, label in samples])
    with torch.no_grad():
        logits = model(images)
    top5 = torch.topk(logits, 5, dim=1).indices
    assert reported["images"] == len(samples)
    assert reported["top1"] == pytest.approx((top5[:, 0] == labels).float().mean().item())
    assert reported["top5"] == pytest.approx((top5 == labels[:, None]).any(1).float().mean().item())
    assert reported["top1"] > 0.5


def test_registered_model_export_loads_with_create_model(digits, tmp_path):
    listing = _subset(digits, 8, "eight.txt")
    cfg = tiny_config(
        digits,
        tmp_path,
        train={"batch_size": 4, "max_steps": 1},
        data={
            "train_list": str(listing),
            "val_dir": str(digits / "train"),
            "val_list": str(listing),
        },
    )
    cfg["model"] = {"name": "Res2Net50_26w_4s", "num_classes": 10, "channels_last": False}
    result = train(config_from_dict(cfg))
    model = res2net.create_model(
        "Res2Net50_26w_4s", pretrained=str(result.final_weights), num_classes=10, skip_head=False
    )
    saved = load_file(result.final_weights)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


def _cli(config: dict, path: Path, *args: str) -> subprocess.Popen:
    path.write_text(json.dumps(config))  # JSON is YAML
    cmd = [sys.executable, "-m", "res2net", "train", "--config", str(path), *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]


def _resume_sections(digits: Path) -> dict:
    """128 images in batches of 16: 8 steps an epoch, 2 epochs, a checkpoint every 2 steps."""
    listing = _subset(digits, 128, "resume.txt")
    return {
        "data": {"train_list": str(listing), "val_list": str(_small_val(digits))},
        "augment": {"mixup": 0.2},  # draws random numbers every step: the RNG must resume too
        "train": {"batch_size": 16, "ckpt_every_steps": 2, "deterministic": True},
    }


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory) -> Path:
    """The output folder of the resume tests' run, trained without interruption."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    whole = tiny_config(digits, tmp / "whole", **_resume_sections(digits))
    _finish(_cli(whole, tmp / "whole.json"))
    return tmp / "whole"


def _assert_same_run(a_dir: Path, b_dir: Path) -> None:
    a = load_file(a_dir / "final.safetensors")
    b = load_file(b_dir / "final.safetensors")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    assert (a_dir / "metrics.csv").read_text() == (b_dir / "metrics.csv").read_text()


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_sigkill_is_exact(digits, uninterrupted, tmp_path, workers):
    """An uninterrupted run (decoding in the main process) and a run killed mid-epoch and
    resumed end with bit-equal weights, also when the killed run decodes in worker
    processes: augmentation depends on the sample, not on who decodes it or when."""
    killed = tiny_config(digits, tmp_path / "killed", **_resume_sections(digits))
    killed["data"]["num_workers"] = workers
    proc = _cli(killed, tmp_path / "killed.json")
    last = tmp_path / "killed" / "last.pt"
    while not last.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # a real kill: no handler, no cleanup
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(last)
    assert state["step_in_epoch"] > 0, "the kill should land mid-epoch"
    assert state["global_step"] < 16
    assert not (tmp_path / "killed" / "final.safetensors").exists()

    _finish(_cli(killed, tmp_path / "killed.json", "--resume"))
    _assert_same_run(uninterrupted, tmp_path / "killed")


# Trains with `res2net train`, SIGKILLing itself right after optimizer step KILL_AT
# (PyTorch's global optimizer step hook): a kill at an exact step, with no hook in the library.
KILL_SCRIPT = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
from res2net.cli import main

kill_at, steps = int(sys.argv[1]), 0

def kill_after_step(optimizer, args, kwargs):
    global steps
    steps += 1
    if steps == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

register_optimizer_step_post_hook(kill_after_step)
sys.exit(main(["train", "--config", sys.argv[2]]))
"""


@pytest.mark.slow
def test_resume_after_sigkill_at_a_random_later_step_is_exact(digits, uninterrupted, tmp_path):
    """Killed at a seeded random step in the middle of epoch 2, after an epoch end (with its
    evaluation and metrics row) and several checkpoints, with the steps after the last
    checkpoint lost and redone on resume (data decoded in 2 worker processes, which had
    read ahead): the resumed run ends bit-equal to the uninterrupted one."""
    steps_per_epoch, every = 8, 2
    kill_at = random.Random(15).randint(steps_per_epoch + 3, 2 * steps_per_epoch - 1)
    killed = tiny_config(digits, tmp_path / "killed", **_resume_sections(digits))
    killed["data"]["num_workers"] = 2
    config = tmp_path / "killed.json"
    config.write_text(json.dumps(killed))
    script = tmp_path / "kill_at_step.py"
    script.write_text(KILL_SCRIPT)
    cmd = [sys.executable, str(script), str(kill_at), str(config)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    state = load_checkpoint(tmp_path / "killed" / "last.pt")
    saved = every * ((kill_at - 1) // every)  # the last checkpoint before the kill
    assert (state["epoch"], state["global_step"]) == (1, saved), (kill_at, state["global_step"])
    assert 0 < state["step_in_epoch"] < steps_per_epoch
    assert len(state["history"]) == 1  # epoch 1's row, evaluation included
    assert not (tmp_path / "killed" / "final.safetensors").exists()

    _finish(_cli(killed, config, "--resume"))
    _assert_same_run(uninterrupted, tmp_path / "killed")


def test_crash_mid_save_keeps_previous_checkpoint(digits, tmp_path, monkeypatch):
    listing = _subset(digits, 64, "crash.txt")
    sections = {
        "data": {"train_list": str(listing), "val_list": str(_small_val(digits))},
        "train": {"batch_size": 16, "ckpt_every_steps": 2, "max_steps": 2},
    }
    train(config_from_dict(tiny_config(digits, tmp_path, **sections)))
    last = tmp_path / "last.pt"
    before = last.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    sections["train"]["max_steps"] = None
    with pytest.raises(OSError, match="no space left"):
        train(config_from_dict(tiny_config(digits, tmp_path, **sections)), resume=last)
    assert last.read_bytes() == before
    assert load_checkpoint(last)["global_step"] == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(digits, tmp_path, monkeypatch):
    listing = _subset(digits, 64, "nan.txt")
    sections = {
        "data": {"train_list": str(listing), "val_list": str(_small_val(digits))},
        "train": {"batch_size": 16, "ckpt_every_steps": 2, "log_every": 1},
    }
    real_loss = losses.hard_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(losses, "hard_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf at step 5\b") as err:
        train(config_from_dict(tiny_config(digits, tmp_path, **sections)))
    assert "last.pt (step 4)" in str(err.value)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# Parameters before the first optimizer step and after each of the first STEPS, saved by
# PyTorch's global optimizer hooks into FOLDER/step{k}.safetensors.
SNAPSHOTS = """
import os
from safetensors.torch import save_file
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.optim.optimizer import register_optimizer_step_pre_hook

def snapshot_steps(folder, steps):
    os.makedirs(folder, exist_ok=True)
    taken = [0]
    def save(optimizer):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state = {str(i): p.detach().clone() for i, p in enumerate(params)}
        save_file(state, f"{folder}/step{taken[0]}.safetensors")
    def before(optimizer, args, kwargs):
        if taken[0] == 0:
            save(optimizer)
    def after(optimizer, args, kwargs):
        taken[0] += 1
        if taken[0] <= steps:
            save(optimizer)
    register_optimizer_step_pre_hook(before)
    register_optimizer_step_post_hook(after)
"""

DDP_SCRIPT = (
    SNAPSHOTS
    + """
import os, sys
from pathlib import Path
from safetensors.torch import save_file
from res2net.engine import checkpoint
from res2net.engine.config import load_config
from res2net.engine.train import train

rank = os.environ["RANK"]
out = Path(sys.argv[2])

def spy(real):
    def wrapper(*args, **kwargs):
        with open(out.parent / f"writes_rank{rank}.txt", "a") as fh:
            fh.write(f"{real.__name__}\\n")
        return real(*args, **kwargs)
    return wrapper

checkpoint.atomic_torch_save = spy(checkpoint.atomic_torch_save)
checkpoint.export_weights = spy(checkpoint.export_weights)
snapshot_steps(out.parent / f"steps_rank{rank}", 2)
result = train(load_config(sys.argv[1]))
params = {k: p.detach().clone() for k, p in result.model.named_parameters()}
save_file(params, str(out.parent / f"params_rank{rank}.safetensors"))
"""
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_config(digits: Path, out: Path, batch_size: int) -> dict:
    """256 images, 3 epochs, no Mixup (its draws differ per process by design)."""
    listing = _subset(digits, 256, "ddp.txt")
    return tiny_config(
        digits,
        out,
        data={"train_list": str(listing), "val_list": str(_small_val(digits))},
        schedule={"epochs": 3},
        train={"batch_size": batch_size},
    )


@pytest.fixture(scope="module")
def ddp_run(digits, tmp_path_factory) -> Path:
    """A 2-process torchrun (gloo on CPU) of 16 images per process; returns its folder."""
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "cfg.json").write_text(json.dumps(_ddp_config(digits, tmp / "run", 16)))
    script = tmp / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(script),
        str(tmp / "cfg.json"),
        str(tmp / "run"),
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp


def test_torchrun_two_processes_gloo(ddp_run):
    tmp_path = ddp_run
    p0 = load_file(tmp_path / "params_rank0.safetensors")
    p1 = load_file(tmp_path / "params_rank1.safetensors")
    assert p0.keys() == p1.keys()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    writes = (tmp_path / "writes_rank0.txt").read_text().split()
    assert "atomic_torch_save" in writes and "export_weights" in writes
    assert not (tmp_path / "writes_rank1.txt").exists()  # one checkpoint writer: rank 0
    history = load_checkpoint(tmp_path / "run" / "last.pt")["history"]
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]


# One process, with each BatchNorm normalising every half of the batch on its own: plain DDP
# (no SyncBatchNorm) normalises each process's share with that share's own statistics, and
# keeps rank 0's running statistics (its buffers are broadcast to the others every step).
# Rank r of 2 reads rows r, r + 2, r + 4, ... of the one-process batch (ResumableSampler).
PER_PROCESS_BN_SCRIPT = (
    SNAPSHOTS
    + """
import sys
import torch
import torch.nn.functional as F
from torch import nn
from res2net.engine import train as train_module
from res2net.engine.config import load_config

world = 2
real_build = train_module.build_model

def per_process(bn):
    plain = bn.forward
    def forward(x):
        if not bn.training:
            return plain(x)
        shares = [F.batch_norm(x[r::world], bn.running_mean if r == 0 else None,
                               bn.running_var if r == 0 else None, bn.weight, bn.bias,
                               True, bn.momentum, bn.eps) for r in range(world)]
        return torch.stack(shares, 1).flatten(0, 1)  # rows back in their places
    return forward

def build(cfg):
    model = real_build(cfg)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.forward = per_process(module)
    return model

train_module.build_model = build
snapshot_steps(sys.argv[2], 2)
train_module.train(load_config(sys.argv[1]))
"""
)


def _flat(path: Path) -> torch.Tensor:
    state = load_file(path)
    return torch.cat([state[str(i)].double().flatten() for i in range(len(state))])


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_at_the_same_global_batch(digits, ddp_run):
    """2 processes x 16 images (gloo) against 1 process x 32 images: same data order, same
    per-sample augmentation, no Mixup, and the one-process run normalises BatchNorm over each
    process's half of the batch as plain DDP does, so both compute the same function and the
    same averaged gradient; the parameters after the first two optimizer steps must agree.

    Tolerance, as a fraction of how far the step(s) moved the parameters (L2): 1e-4 after
    step 1 and 1e-2 after step 2. Only float rounding differs (batched convolutions, the
    all-reduce summing in another order): measured 5e-6 and 4e-4, the same as two
    one-process runs with 1 and 2 OpenMP threads give (1e-6, 4e-4). Rounding grows about 50x
    a step here, because the late stages normalise 16 values per channel (1 x 1 maps), so
    later steps cannot be compared this way. Broken builds measured 0.56 or more: gradients
    not averaged (no DDP) 0.85 and 1.0, both processes reading the same half 0.85 and 1.0,
    and a one-process run with ordinary BatchNorm 0.56 (why per-process BatchNorm is needed).
    """
    tmp = ddp_run
    one = _ddp_config(digits, tmp / "one", 32)
    one["train"]["max_steps"] = 2  # same schedule (it follows the epochs), stops early
    (tmp / "one.json").write_text(json.dumps(one))
    script = tmp / "per_process_bn.py"
    script.write_text(PER_PROCESS_BN_SCRIPT)
    cmd = [sys.executable, str(script), str(tmp / "one.json"), str(tmp / "steps_one")]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    start = _flat(tmp / "steps_one" / "step0.safetensors")
    assert torch.equal(_flat(tmp / "steps_rank0" / "step0.safetensors"), start)
    for step, tolerance in ((1, 1e-4), (2, 1e-2)):
        one_process = _flat(tmp / "steps_one" / f"step{step}.safetensors")
        two_processes = _flat(tmp / "steps_rank0" / f"step{step}.safetensors")
        moved = torch.linalg.vector_norm(one_process - start)
        drift = torch.linalg.vector_norm(two_processes - one_process)
        assert moved > 0.01, moved  # the step did move the weights: the ratio means something
        assert drift <= tolerance * moved, (step, (drift / moved).item())


def test_ema_clipping_cutmix_channels_last_run_and_export_the_ema(digits, tmp_path):
    listing = _subset(digits, 32, "options.txt")
    cfg = tiny_config(
        digits,
        tmp_path,
        model={"channels_last": True},
        data={"train_list": str(listing), "val_list": str(_small_val(digits))},
        augment={"mixup": 0.2, "cutmix": 1.0, "cutmix_prob": 0.5},
        train={"batch_size": 8, "ema_decay": 0.5, "grad_clip": 1.0, "max_steps": 3},
    )
    result = train(config_from_dict(cfg))
    assert result.global_step == 3
    exported = load_file(result.final_weights)
    raw = result.model.state_dict()
    # The export is the EMA of the weights, not the last step's weights.
    assert any(not torch.equal(exported[k], raw[k]) for k in exported if k.endswith(".weight"))
    state = load_checkpoint(tmp_path / "last.pt")
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    assert all(torch.equal(ema[k], v) for k, v in exported.items())


def test_ema_and_grad_clipping_recomputed_by_hand(digits, tmp_path, monkeypatch):
    """Every step's gradients before and after clipping, and the weights after each step,
    are captured with PyTorch's own hooks; clipping (scale by clip / total norm when over)
    and the EMA (first step copies, then decay * ema + (1 - decay) * weights) are redone
    here and must equal what training did and exported."""
    decay, clip = 0.6, 0.05
    raw: list[dict[int, torch.Tensor]] = []
    clipped: list[dict[int, torch.Tensor]] = []
    weights: list[dict[int, torch.Tensor]] = []
    real_build = train_module.build_model

    def build_with_hooks(cfg):
        model = real_build(cfg)
        for p in model.parameters():
            p.register_post_accumulate_grad_hook(
                lambda p: raw[-1].__setitem__(id(p), p.grad.detach().clone())
            )
        return model

    def before_step(optimizer, args, kwargs):
        clipped.append({id(p): p.grad.detach().clone() for g in optimizer.param_groups
                        for p in g["params"] if p.grad is not None})  # fmt: skip

    def after_step(optimizer, args, kwargs):
        weights.append({id(p): p.detach().clone() for g in optimizer.param_groups
                        for p in g["params"]})  # fmt: skip
        raw.append({})

    monkeypatch.setattr(train_module, "build_model", build_with_hooks)
    raw.append({})
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    handles = [register_optimizer_step_pre_hook(before_step),
               register_optimizer_step_post_hook(after_step)]  # fmt: skip
    try:
        listing = _subset(digits, 32, "byhand.txt")
        cfg = tiny_config(
            digits,
            tmp_path,
            data={"train_list": str(listing), "val_list": str(_small_val(digits))},
            train={"batch_size": 8, "ema_decay": decay, "grad_clip": clip, "max_steps": 3},
            output={"tensorboard": False, "plot": False},
        )
        result = train(config_from_dict(cfg))
    finally:
        for handle in handles:
            handle.remove()
    assert len(weights) == 3 and len(clipped) == 3
    for step in range(3):
        grads = raw[step]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in
                                                      grads.values()]))  # fmt: skip
        assert total > clip, "clipping must be active for the check to mean anything"
        scale = clip / (total + 1e-6)
        for key, g in grads.items():
            torch.testing.assert_close(clipped[step][key], g * scale, rtol=1e-5, atol=1e-9)
    names = {id(p): name for name, p in result.model.named_parameters()}
    ema = dict(weights[0])
    for step in (1, 2):
        ema = {k: decay * ema[k] + (1 - decay) * weights[step][k] for k in ema}
    exported = load_file(result.final_weights)
    for key, value in ema.items():
        torch.testing.assert_close(exported[names[key]], value, rtol=1e-5, atol=1e-7)
    # The EMA is not simply the last weights: the comparison above could fail.
    assert any(not torch.allclose(weights[2][k], ema[k]) for k in ema)
