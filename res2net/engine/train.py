"""The training loop: one process, or one per GPU / CPU slot under ``torchrun``.

Read :func:`train` top to bottom: set up (distributed, seeds, model, data, optimizer),
resume if asked, then epochs of steps with evaluation, logging and checkpoints. Everything
it needs to know comes from a :class:`~res2net.engine.config.Config`.

Under ``torchrun`` the same command runs in every process: DistributedDataParallel keeps the
replicas identical, each rank reads its own shard of every epoch's order, metrics are summed
over ranks, and only rank 0 writes files. gloo is used on CPU, NCCL on GPU.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from res2net.data.datasets import (
    ImageDataset,
    build_dataset,
    collate_skipping,
    train_transform,
    unlabeled_samples,
)
from res2net.data.preprocess import Preprocess
from res2net.engine import checkpoint as ckpt
from res2net.engine.config import ArchConfig, Config, ModelConfig, config_to_dict
from res2net.engine.distill import distill_loss, freeze
from res2net.engine.evaluate import evaluate
from res2net.engine.report import MetricsLog


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint was kept."""


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


class ResumableSampler(Sampler[int]):
    """Each epoch's order is a permutation seeded by ``seed + epoch``; rank ``r`` of ``w``
    takes every ``w``-th index from ``r``. ``set_epoch(e, skip)`` drops the first ``skip``
    indices of this rank's share: that is how a resumed run continues mid-epoch exactly.

    Training pads the order to a multiple of ``w`` (every rank runs the same number of
    steps); evaluation does not (each image counted once). With ``seeded`` it yields
    ``(index, sample_seed)`` pairs for :class:`SeededSamples`: the seed is a function of
    (``seed``, epoch, index) alone.
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
        seeded: bool = False,
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world, self.pad, self.seeded = rank, world, pad, seeded
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.size % self.world:
            order += order[: self.world - self.size % self.world]
        return order[self.rank :: self.world]

    def __iter__(self):
        indices = self._indices()[self.skip :]
        if not self.seeded:
            return iter(indices)
        return iter((i, sample_seed(self.seed, self.epoch, i)) for i in indices)

    def __len__(self) -> int:
        return len(self._indices()) - self.skip


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (64 bits, well mixed)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[index]`` with torch's generator seeded by the sampler's ``sample_seed``.

    A sample's random crop and flip then depend on (seed, epoch, index) alone: not on
    which worker process decodes it, how many workers there are, how many samples that
    worker decoded before, the number of training processes, or whether the run was
    resumed mid-epoch. The caller's generator state is left as it was.
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


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


def _mix(images: Tensor, targets: Tensor, mask: Tensor, cfg: Config):
    """Mixup or CutMix (REFERENCE.md §5: mixup alpha 0.2) on a batch with soft targets."""
    a = cfg.augment
    use_cutmix = a.cutmix > 0 and (a.mixup <= 0 or torch.rand(()).item() < a.cutmix_prob)
    alpha = a.cutmix if use_cutmix else a.mixup
    if alpha <= 0:
        return images, targets, mask
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    perm = torch.randperm(images.shape[0]).to(images.device)
    if use_cutmix:
        h, w = images.shape[2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        images = images.clone()
        images[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        images = lam * images + (1 - lam) * images[perm]
    return images, lam * targets + (1 - lam) * targets[perm], mask * mask[perm]


def _hard_loss(logits: Tensor, targets: Tensor, mask: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy with label smoothing on (possibly mixed) soft targets, over labelled rows."""
    per_image = F.cross_entropy(
        logits.float(), targets, label_smoothing=smoothing, reduction="none"
    )
    return (per_image * mask).sum() / mask.sum().clamp(min=1)


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
    _seed_everything(t.seed)  # same on every rank: identical initial weights
    model = build_model(cfg.model).to(device)
    if cfg.model.sync_bn and device.type == "cpu":
        raise ValueError("model.sync_bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel)")
    if cfg.model.sync_bn and ctx.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = _build_teacher(cfg, device)
    # Mixup/CutMix draws differ per rank; crops and flips are seeded per sample (SeededSamples).
    _seed_everything(t.seed + ctx.rank)
    train_loader, val_loader, sampler, train_set = _data(cfg, ctx, device)
    optimizer = _optimizer(model, cfg)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]
    if t.amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a GPU; use bf16 or none on CPU")
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
    ema = None
    if t.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.model.compile:
        net = torch.compile(net)

    steps_per_epoch = len(train_loader)
    total_steps = cfg.schedule.epochs * steps_per_epoch
    epoch, step_in_epoch, global_step, best_top1 = 0, 0, 0, -1.0
    resumed_sums = None
    log = MetricsLog(out, enabled=ctx.main, tensorboard=cfg.output.tensorboard)
    if resume is not None:
        state = ckpt.load_checkpoint(resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
        global_step, best_top1 = state["global_step"], state["best_top1"]
        log.history = state["history"]
        resumed_sums = state["epoch_sums"].to(device)
        if len(state["rng"]) == ctx.world:
            ckpt.set_rng_state(state["rng"][ctx.rank])
        else:  # another process count: continue, but the data order cannot be the same
            warnings.warn(
                f"{resume} was written by {len(state['rng'])} processes, this run has "
                f"{ctx.world}: resuming, but not exactly (other data order and augmentation)",
                stacklevel=2,
            )
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))

    def save(epoch_: int, step_: int, sums_: Tensor) -> None:
        # Every rank's RNG state goes into the file, so each continues its own stream.
        rngs = [ckpt.rng_state()]
        if ctx.world > 1:
            rngs = [None] * ctx.world
            dist.all_gather_object(rngs, ckpt.rng_state())
        if ctx.main:
            ckpt.atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": {"global_step": global_step, "total_steps": total_steps},
                    "scaler": scaler.state_dict(),
                    "ema": ema.state_dict() if ema else None,
                    "rng": rngs,
                    "epoch": epoch_,
                    "step_in_epoch": step_,
                    "global_step": global_step,
                    "best_top1": best_top1,
                    "history": log.history,
                    "epoch_sums": sums_.cpu(),
                    "config": config_to_dict(cfg),
                },
                out / ckpt.LAST,
            )

    # The first step whose loss was not finite (-1: none yet), tracked on the device so the
    # step loop never waits for the GPU; checked at log intervals and before every save.
    bad_step = torch.tensor(-1, device=device)
    last_saved = {"step": global_step}

    def check_finite() -> None:
        worst = bad_step.clone()
        if ctx.world > 1:
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if worst.item() >= 0:
            kept = out / ckpt.LAST
            where = f"kept {kept} (step {last_saved['step']})" if kept.exists() else "none saved"
            raise NonFiniteLossError(
                f"training loss became NaN/inf at step {worst.item()}; stopped. Last good "
                f"checkpoint: {where}. Lower optim.lr, set train.grad_clip, or check the data."
            )

    def save_checked(epoch_: int, step_: int, sums_: Tensor) -> None:
        check_finite()
        save(epoch_, step_, sums_)
        last_saved["step"] = global_step

    num_classes = cfg.model.num_classes
    bar = _progress(ctx.main and t.progress, total_steps, global_step)
    stop = False
    while epoch < cfg.schedule.epochs and not stop:
        sampler.set_epoch(epoch, skip=step_in_epoch * t.batch_size)
        net.train()
        # loss sum, images, corrupt images skipped: summed on the device, read at log time
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        if resumed_sums is not None:  # a run resumed mid-epoch keeps the epoch's running sums
            sums, resumed_sums = resumed_sums, None
        tick, tick_images = time.perf_counter(), 0.0
        epoch_start, epoch_images = time.perf_counter(), sums[1].item()
        for images, labels, skipped in train_loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(global_step, total_steps, cfg, steps_per_epoch)
            sums[2] += skipped
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if cfg.model.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            mask = (labels >= 0).float()
            targets = F.one_hot(labels.clamp(min=0), num_classes).float() * mask[:, None]
            images, targets, mask = _mix(images, targets, mask, cfg)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(images)
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(images)
            if teacher is not None:
                d = cfg.distill
                loss = distill_loss(d.loss, logits, teacher_logits, d.temperature)
                if d.hard_weight:
                    hard = _hard_loss(logits, targets, mask, cfg.loss.label_smoothing)
                    loss = loss + d.hard_weight * hard
            else:
                loss = _hard_loss(logits, targets, mask, cfg.loss.label_smoothing)

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            global_step += 1
            step_in_epoch += 1
            finite = torch.isfinite(loss.detach())
            bad_step = torch.where((bad_step < 0) & ~finite, global_step, bad_step)
            sums[0] += loss.detach() * images.shape[0]
            sums[1] += images.shape[0]
            tick_images += images.shape[0]

            if global_step % t.log_every == 0 or step_in_epoch == steps_per_epoch:
                check_finite()
                rate = tick_images * ctx.world / (time.perf_counter() - tick)
                bar.set_postfix(
                    loss=f"{loss.item():.4f}",
                    lr=f"{optimizer.param_groups[0]['lr']:.4g}",
                    img_s=f"{rate:.0f}",
                )
                tick, tick_images = time.perf_counter(), 0.0
            bar.update(1)
            if t.max_steps is not None and global_step >= t.max_steps:
                stop = True
                break
            if t.ckpt_every_steps and global_step % t.ckpt_every_steps == 0:
                save_checked(epoch, step_in_epoch, sums)

        # End of an epoch (or of a max_steps run): metrics, best weights, checkpoint.
        totals = sums.clone()  # sums stay this rank's own: a mid-epoch checkpoint keeps them
        if ctx.world > 1:
            dist.all_reduce(totals)
        check_finite()
        epoch_done = step_in_epoch >= steps_per_epoch
        row: dict[str, Any] = {
            "epoch": epoch + 1 if epoch_done else epoch + step_in_epoch / steps_per_epoch,
            "step": global_step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": (totals[0] / totals[1].clamp(min=1)).item(),
        }
        if totals[2].item():
            row["skipped_images"] = int(totals[2].item())
        if epoch_done:
            epoch, step_in_epoch = epoch + 1, 0
        if stop or epoch % t.eval_every_epochs == 0 or epoch == cfg.schedule.epochs:
            eval_model = ema.module if ema is not None else model
            metrics = evaluate(
                eval_model,
                val_loader,
                device,
                teacher=teacher,
                channels_last=cfg.model.channels_last,
                amp_dtype=amp_dtype,
            )
            row.update({f"val_{k}": v for k, v in metrics.items() if k != "images"})
            # metrics are summed over ranks: every rank takes the same branch here.
            if metrics["top1"] > best_top1:
                best_top1 = metrics["top1"]
                if ctx.main:
                    ckpt.export_weights(
                        eval_model, out / ckpt.BEST_WEIGHTS, _metadata(cfg, train_set.classes)
                    )
        log.add(row)
        if ctx.main:
            seen = (sums[1].item() - epoch_images) * ctx.world
            log.echo(row, cfg.schedule.epochs, seen, time.perf_counter() - epoch_start)
        save_checked(epoch, step_in_epoch, torch.zeros_like(sums) if epoch_done else sums)
    bar.close()

    final = None
    if ctx.main:
        final_model = ema.module if ema is not None else model
        final = ckpt.export_weights(
            final_model, out / ckpt.FINAL_WEIGHTS, _metadata(cfg, train_set.classes)
        )
        if cfg.output.plot:
            log.plot()
    log.close()
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(out, final, log.history, best_top1, global_step, model)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(enabled: bool, total: int, done: int):
    # On a log file, tqdm's carriage returns make one endless line: the epoch lines suffice.
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True)
