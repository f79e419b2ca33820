"""The training loop: one process, or one per GPU / CPU slot under ``torchrun``.

Read :func:`train` top to bottom: set up (distributed, seeds, model, data, optimizer),
resume if asked, then epochs of steps with evaluation, logging and checkpoints. Everything
it needs to know comes from a :class:`~res2net.engine.config.Config`. The pieces live next
door: the data order and per-sample seeds in :mod:`res2net.data.sampling`, the loss and batch
mixing in :mod:`res2net.engine.losses`, checkpoints in :mod:`res2net.engine.checkpoint`, the
metrics log and progress bar in :mod:`res2net.engine.report`.

Under ``torchrun`` the same command runs in every process: DistributedDataParallel keeps the
replicas identical, each rank reads its own shard of every epoch's order, metrics are summed
over ranks, and only rank 0 writes files. gloo is used on CPU, NCCL on GPU.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from res2net.data.datasets import (
    ImageDataset,
    build_dataset,
    collate_skipping,
    train_transform,
    unlabeled_samples,
)
from res2net.data.preprocess import Preprocess
from res2net.data.sampling import ResumableSampler, SeededSamples
from res2net.engine import checkpoint as ckpt
from res2net.engine import losses
from res2net.engine.config import ArchConfig, Config, ConfigError, ModelConfig, config_to_dict
from res2net.engine.distill import freeze
from res2net.engine.evaluate import evaluate
from res2net.engine.report import MetricsLog, progress_bar
from res2net.engine.run_folder import FinishedRun, write_finished


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint was kept."""


class UntrainedError(ValueError):
    """A run ended with nothing worth exporting: no step trained, or weights not finite."""


@dataclass
class TrainResult:
    """What a finished run left behind (paths are on rank 0's file system)."""

    out_dir: Path
    final_weights: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = 0.0
    global_step: int = 0
    model: nn.Module | None = None  # the trained network (this rank's replica)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


# ---------------------------------------------------------------------------------------------
# Set-up pieces


def _setup_distributed(device_name: str) -> tuple[_Dist, torch.device]:
    """Join the torchrun process group (if launched by torchrun) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ctx = _Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build_arch(arch: ArchConfig, num_classes: int) -> nn.Module:
    from res2net.models.res2net import Res2Net

    return Res2Net(arch, num_classes=num_classes)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network a config names: a registered model (optionally pretrained) or an arch."""
    from res2net.builder import create_model

    if cfg.arch is not None:
        model = _build_arch(cfg.arch, cfg.num_classes)
        if cfg.pretrained:
            from res2net.builder import load_weights

            load_weights(model, cfg.pretrained)
    else:
        model = create_model(cfg.name, pretrained=cfg.pretrained, num_classes=cfg.num_classes)
    if cfg.zero_init_residual and not cfg.pretrained:
        for name, module in model.named_modules():
            if name.endswith(".bn3"):  # the last BatchNorm of every Bottle2neck
                nn.init.zeros_(module.weight)
    return model.train()


def _build_teacher(cfg: Config, device: torch.device) -> nn.Module | None:
    """The frozen teacher of a distillation run, with all of its weights (head included)."""
    from res2net.builder import create_model, load_weights

    d = cfg.distill
    if d is None:
        return None
    weights = d.teacher_weights
    if weights is True:
        if d.teacher is None:
            raise ValueError(
                "distill.teacher_weights: true means a registered teacher's published weights; "
                "with teacher_arch give a weight file path"
            )
        # skip_head=False: a teacher's head must be its trained one, so published (1000-class)
        # weights with a student of another class count are a strict-loading error.
        teacher = create_model(
            d.teacher, pretrained=True, num_classes=cfg.model.num_classes, skip_head=False
        )
        return freeze(teacher.to(device))
    if not isinstance(weights, str) or not weights:
        raise ValueError(
            "distill.teacher_weights: a teacher needs trained weights: a file path, or true "
            f"for the registered teacher's published weights (got {weights!r})"
        )
    if d.teacher is not None:
        teacher = create_model(d.teacher, num_classes=cfg.model.num_classes)
    else:
        teacher = _build_arch(d.teacher_arch, cfg.model.num_classes)
    load_weights(teacher, weights)  # strict: a head of another size is an error
    return freeze(teacher.to(device))


def _data(cfg: Config, ctx: _Dist, device: torch.device):
    """Train and validation loaders and the train sampler (to position it each epoch)."""
    from res2net.data.transforms import eval_transform

    d = cfg.data
    augment = train_transform(
        d.image_size,
        crop_scale=d.crop_scale,
        crop_ratio=d.crop_ratio,
        hflip=d.hflip,
        mean=d.mean,
        std=d.std,
    )
    train_set = build_dataset(
        d.train_dir, augment, d.train_list, d.on_corrupt, cfg.model.num_classes
    )
    if cfg.distill is not None and cfg.distill.unlabeled_dirs:
        extra = unlabeled_samples(cfg.distill.unlabeled_dirs)
        train_set = ImageDataset(
            train_set.samples + extra, augment, d.on_corrupt, train_set.classes
        )
    val_set = build_dataset(
        d.val_dir,
        eval_transform(_eval_preprocess(cfg)),
        d.val_list,
        d.on_corrupt,
        cfg.model.num_classes,
    )

    bs = cfg.train.batch_size
    if len(train_set) < bs * ctx.world:
        raise ValueError(
            f"{d.train_dir}: {len(train_set)} images, fewer than one batch of "
            f"{bs} x {ctx.world} processes; lower train.batch_size"
        )
    train_sampler = ResumableSampler(
        len(train_set),
        shuffle=True,
        seed=cfg.train.seed,
        rank=ctx.rank,
        world=ctx.world,
        seeded=True,
    )
    val_sampler = ResumableSampler(
        len(val_set), shuffle=False, seed=0, rank=ctx.rank, world=ctx.world, pad=False
    )
    common = {
        "num_workers": d.num_workers,
        "pin_memory": d.pin_memory and device.type == "cuda",
        "collate_fn": collate_skipping,
        "persistent_workers": False,
        # A private generator: creating an iterator must not draw from the global RNG,
        # whose state the checkpoints restore (else a resumed run would diverge).
        "generator": torch.Generator().manual_seed(cfg.train.seed),
    }
    train_loader = DataLoader(
        SeededSamples(train_set), bs, sampler=train_sampler, drop_last=True, **common
    )
    val_loader = DataLoader(val_set, bs, sampler=val_sampler, **common)
    return train_loader, val_loader, train_sampler, train_set


def _optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
    )


def lr_at(step: int, total_steps: int, cfg: Config, steps_per_epoch: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine decay
    to ``min_lr`` over the remaining steps, updated every iteration as PaddleClas does."""
    base, low = cfg.optim.lr, cfg.schedule.min_lr
    warmup = int(round(cfg.schedule.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return low + 0.5 * (base - low) * (1.0 + math.cos(math.pi * progress))


def _place(model: nn.Module, cfg: ModelConfig, ctx: _Dist, device: torch.device) -> nn.Module:
    """The model on its device, with SyncBatchNorm under torchrun if asked, channels-last."""
    model = model.to(device)
    if cfg.sync_bn and device.type == "cpu":
        raise ValueError("model.sync_bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel)")
    if cfg.sync_bn and ctx.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a GPU; use bf16 or none on CPU")
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _ema(model: nn.Module, decay: float | None) -> nn.Module | None:
    """An exponential moving average of the weights and buffers (PyTorch's AveragedModel)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _wrap(model: nn.Module, cfg: ModelConfig, ctx: _Dist, device: torch.device) -> nn.Module:
    """The model as the step calls it: DistributedDataParallel under torchrun (gradients are
    averaged over the processes in backward), compiled if asked."""
    net = model
    if ctx.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(net) if cfg.compile else net


@dataclass
class _Parts:
    """What a step touches. ``model`` is this rank's replica (saved and exported), ``net`` the
    same network as called (DDP-wrapped and/or compiled)."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: nn.Module | None
    teacher: nn.Module | None
    amp_dtype: torch.dtype | None

    @classmethod
    def around(
        cls, model: nn.Module, teacher: nn.Module | None, cfg: Config, ctx: _Dist, device
    ) -> _Parts:
        """The optimizer, AMP, EMA and DDP set-up of ``model`` as ``cfg`` asks."""
        t = cfg.train
        optimizer = _optimizer(model, cfg)
        amp_dtype = _amp_dtype(t.amp, device)
        scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
        ema = _ema(model, t.ema_decay)
        net = _wrap(model, cfg.model, ctx, device)
        return cls(model, net, optimizer, scaler, ema, teacher, amp_dtype)

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint saves and restores, by name."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scaler": self.scaler,
            "ema": self.ema,
        }

    @property
    def averaged(self) -> nn.Module:
        """The network that is evaluated and exported: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model


class _LossWatch:
    """Remembers the first step whose loss was not finite (-1: none yet). It is tracked on
    the device so the step loop never waits for the GPU; :meth:`check` reads it, at log
    intervals and before every save."""

    def __init__(self, device: torch.device, kept: Path, kept_step: int) -> None:
        self.bad_step = torch.tensor(-1, device=device)
        self.kept, self.kept_step = kept, kept_step  # the last checkpoint written

    def record(self, loss: Tensor, step: int) -> None:
        finite = torch.isfinite(loss.detach())
        self.bad_step = torch.where((self.bad_step < 0) & ~finite, step, self.bad_step)

    def check(self, world: int) -> None:
        worst = self.bad_step.clone()
        if world > 1:
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if worst.item() >= 0:
            where = "none saved"
            if self.kept.exists():
                where = f"kept {self.kept} (step {self.kept_step})"
            raise NonFiniteLossError(
                f"training loss became NaN/inf at step {worst.item()}; stopped. Last good "
                f"checkpoint: {where}. Lower optim.lr, set train.grad_clip, or check the data."
            )


@dataclass
class _Run:
    """One run's fixed context, handed to the loop's helpers."""

    cfg: Config
    ctx: _Dist
    device: torch.device
    out: Path
    parts: _Parts
    log: MetricsLog
    watch: _LossWatch
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.cfg.schedule.epochs * self.steps_per_epoch


def _metadata(cfg: Config, classes: list[str] | None) -> dict[str, str]:
    """The model card of the run, as the ``.safetensors`` header entry that `res2net eval` /
    predict / export read back (:func:`res2net.card.load_card`)."""
    from res2net.card import ModelCard, training_metadata
    from res2net.models.registry import get_entry

    entry = get_entry(cfg.model.name) if cfg.model.arch is None else None
    card = ModelCard(
        name=cfg.model.name,
        config=cfg.model.arch or entry.config,
        num_classes=cfg.model.num_classes,
        preprocess=_eval_preprocess(cfg),
        labels=tuple(classes) if classes is not None else None,
        family=entry.family if entry is not None else None,
    )
    return training_metadata(card)


def _eval_preprocess(cfg: Config) -> Preprocess:
    """The eval preprocessing of a run: its validation images' and its exports' (the
    registry's default interpolation and style, the config's sizes, mean and std)."""
    d = cfg.data
    return Preprocess(resize_short=d.resize_short, crop=d.image_size, mean=d.mean, std=d.std)


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: Config, resume: str | Path | None = None) -> TrainResult:
    """Train (or distill) as ``cfg`` says; ``resume`` is a checkpoint to continue from exactly.

    Writes to ``cfg.output.dir``: ``last.pt`` (every epoch, and every
    ``train.ckpt_every_steps`` steps), ``best.safetensors`` (best validation top-1),
    ``final.safetensors``, ``metrics.csv``, ``curves.png``, TensorBoard events, ``config.json``.

    :raises NonFiniteLossError: the loss became NaN/inf; names the step, keeps ``last.pt``.
    """
    t = cfg.train
    ctx, device = _setup_distributed(t.device)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    out = Path(cfg.output.dir)
    if ctx.main:  # before any slow set-up: a bad folder is the config's mistake, said at once
        _make_output_folder(out)
    _seed_everything(t.seed)  # same on every rank: identical initial weights
    model = _place(build_model(cfg.model), cfg.model, ctx, device)
    teacher = _build_teacher(cfg, device)
    # Mixup/CutMix draws differ per rank; crops and flips are seeded per sample (SeededSamples).
    _seed_everything(t.seed + ctx.rank)
    train_loader, val_loader, sampler, train_set = _data(cfg, ctx, device)
    parts = _Parts.around(model, teacher, cfg, ctx, device)  # optimizer, AMP, EMA, DDP

    log = MetricsLog(out, enabled=ctx.main, tensorboard=cfg.output.tensorboard)
    pos = ckpt.Progress()
    # This epoch's loss sum, images and skipped (corrupt) images, summed on the device and
    # read at log time; a run resumed mid-epoch continues the epoch's sums.
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    if resume is not None:
        pos, log.history, saved_sums = ckpt.restore_training_state(
            resume, parts.stateful(), rank=ctx.rank, world=ctx.world
        )
        sums = saved_sums.to(device)
    if ctx.main:
        (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    watch = _LossWatch(device, out / ckpt.LAST, pos.global_step)
    run = _Run(cfg, ctx, device, out, parts, log, watch, steps_per_epoch=len(train_loader))

    bar = progress_bar(ctx.main and t.progress, run.total_steps, pos.global_step)
    while pos.epoch < cfg.schedule.epochs:
        sampler.set_epoch(pos.epoch, skip=pos.step_in_epoch * t.batch_size)
        start, images_before = time.perf_counter(), sums[1].item()
        stop = _train_epoch(run, pos, train_loader, sums, bar)

        # End of an epoch (or of a max_steps run): metrics, best weights, checkpoint.
        row, epoch_done = _epoch_row(run, pos, sums)
        if stop or pos.epoch % t.eval_every_epochs == 0 or pos.epoch == cfg.schedule.epochs:
            row.update(_validate(run, pos, val_loader, train_set.classes))
        log.add(row)
        if ctx.main:
            seen = (sums[1].item() - images_before) * ctx.world
            log.echo(row, cfg.schedule.epochs, seen, time.perf_counter() - start)
        if epoch_done:
            sums = torch.zeros_like(sums)
        _save(run, pos, sums)
        if stop:
            break
    bar.close()
    if pos.global_step == 0:
        raise UntrainedError(
            f"no training step ran (schedule.epochs={cfg.schedule.epochs}); nothing exported"
        )
    final = _finish(run, pos, train_set.classes)
    return TrainResult(out, final, log.history, pos.best_top1, pos.global_step, model)


def _train_epoch(run: _Run, pos: ckpt.Progress, loader: DataLoader, sums: Tensor, bar) -> bool:
    """This rank's steps through the rest of the epoch; True when ``train.max_steps`` is
    reached (the run stops)."""
    t, parts = run.cfg.train, run.parts
    parts.net.train()
    tick, tick_images = time.perf_counter(), 0.0
    for images, labels, skipped in loader:
        lr = lr_at(pos.global_step, run.total_steps, run.cfg, run.steps_per_epoch)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        sums[2] += skipped
        loss = _step(parts, images, labels, run.cfg, run.device)
        pos.global_step += 1
        pos.step_in_epoch += 1
        run.watch.record(loss, pos.global_step)
        sums[0] += loss.detach() * images.shape[0]
        sums[1] += images.shape[0]
        tick_images += images.shape[0]

        if pos.global_step % t.log_every == 0 or pos.step_in_epoch == run.steps_per_epoch:
            run.watch.check(run.ctx.world)
            rate = tick_images * run.ctx.world / (time.perf_counter() - tick)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
            tick, tick_images = time.perf_counter(), 0.0
        bar.update(1)
        if t.max_steps is not None and pos.global_step >= t.max_steps:
            return True
        if t.ckpt_every_steps and pos.global_step % t.ckpt_every_steps == 0:
            _save(run, pos, sums)
    return False


def _step(parts: _Parts, images: Tensor, labels: Tensor, cfg: Config, device) -> Tensor:
    """One optimizer step on one batch; returns the loss (on the device, not waited for)."""
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if cfg.model.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets, mask = losses.soft_targets(labels, cfg.model.num_classes)
    images, targets, mask = losses.mix_batch(images, targets, mask, cfg.augment)
    teacher_logits = None
    amp = parts.amp_dtype
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        logits = parts.net(images)
        if parts.teacher is not None:
            with torch.no_grad():
                teacher_logits = parts.teacher(images)
    loss = losses.training_loss(cfg, logits, targets, mask, teacher_logits)

    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    if cfg.train.grad_clip:
        parts.scaler.unscale_(parts.optimizer)
        nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.train.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.ema is not None:
        parts.ema.update_parameters(parts.model)
    return loss


def _epoch_row(run: _Run, pos: ckpt.Progress, sums: Tensor) -> tuple[dict[str, Any], bool]:
    """The epoch's metrics row (summed over ranks), and whether the epoch is complete (then
    ``pos`` moves to the next one)."""
    totals = sums.clone()  # sums stay this rank's own: a mid-epoch checkpoint keeps them
    if run.ctx.world > 1:
        dist.all_reduce(totals)
    run.watch.check(run.ctx.world)
    done = pos.step_in_epoch >= run.steps_per_epoch
    row: dict[str, Any] = {
        "epoch": pos.epoch + 1 if done else pos.epoch + pos.step_in_epoch / run.steps_per_epoch,
        "step": pos.global_step,
        "lr": run.parts.optimizer.param_groups[0]["lr"],
        "train_loss": (totals[0] / totals[1].clamp(min=1)).item(),
    }
    if totals[2].item():
        row["skipped_images"] = int(totals[2].item())
    if done:
        pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
    return row, done


def _validate(
    run: _Run, pos: ckpt.Progress, val_loader: DataLoader, classes: list[str] | None
) -> dict[str, float]:
    """Validation metrics (``val_*``) of the averaged network; a new best top-1 is exported."""
    parts = run.parts
    metrics = evaluate(
        parts.averaged,
        val_loader,
        run.device,
        teacher=parts.teacher,
        channels_last=run.cfg.model.channels_last,
        amp_dtype=parts.amp_dtype,
    )
    # metrics are summed over ranks: every rank takes the same branch here.
    if metrics["top1"] > pos.best_top1 and _all_finite(parts.averaged):
        pos.best_top1 = metrics["top1"]
        if run.ctx.main:
            best = run.out / ckpt.BEST_WEIGHTS
            ckpt.export_weights(parts.averaged, best, _metadata(run.cfg, classes))
    return {f"val_{k}": v for k, v in metrics.items() if k != "images"}


def _finish(run: _Run, pos: ckpt.Progress, classes: list[str] | None) -> Path | None:
    """Export the final weights, plot the curves and record the run as finished (rank 0);
    wait for every rank."""
    final = None
    if not _all_finite(run.parts.averaged):
        raise UntrainedError(
            "the trained weights hold NaN or infinite values; nothing exported. Lower "
            "optim.lr, set train.grad_clip, or check the data."
        )
    if run.ctx.main:
        weights = run.out / ckpt.FINAL_WEIGHTS
        final = ckpt.export_weights(run.parts.averaged, weights, _metadata(run.cfg, classes))
        if run.cfg.output.plot:
            run.log.plot()
    run.log.close()
    if final is not None:  # a later --resume finds the run done without torch (run_folder)
        done = FinishedRun(run.out, final, run.log.history, pos.best_top1, pos.global_step)
        write_finished(done, config_to_dict(run.cfg))
    if run.ctx.world > 1:
        dist.barrier()
    return final


def _all_finite(network: nn.Module) -> bool:
    """Whether every parameter and buffer of ``network`` is finite (integer buffers are)."""
    tensors = [*network.parameters(), *network.buffers()]
    return all(bool(torch.isfinite(x).all()) for x in tensors if x.is_floating_point())


def _make_output_folder(out: Path) -> None:
    """Create the run's folder; a path that cannot be a folder is a config error."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"config key 'output.dir': {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"config key 'output.dir': cannot make the folder {out} ({exc.strerror}); name a "
            "new or existing folder"
        ) from None


def _save(run: _Run, pos: ckpt.Progress, sums: Tensor) -> None:
    """Check that every loss so far was finite, then write ``last.pt`` (all ranks call it)."""
    run.watch.check(run.ctx.world)
    ckpt.save_training_state(
        run.out / ckpt.LAST,
        run.parts.stateful(),
        pos,
        history=run.log.history,
        epoch_sums=sums,
        config=config_to_dict(run.cfg),
        world=run.ctx.world,
        write=run.ctx.main,
    )
    run.watch.kept_step = pos.global_step
