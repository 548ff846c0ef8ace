"""One trainer for every task (alignment, fusion, bridge): the task object owns the model and the
forward pass; the trainer owns the loop, optimiser, schedule, checkpoints, logging and stopping.

Checkpoints: `<out>/best.safetensors` and `<out>/last.safetensors` (weights, via the task) plus
`<out>/last_state.pt` (optimiser, scheduler, RNG, history; loaded with weights_only=True). A resumed
run replays the same per-epoch permutations and RNG state, so it ends where an uninterrupted run would.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from crossalign.train.distributed import autocast, broadcast_parameters, gather_rng_states, sync_gradients
from crossalign.train.schedule import warmup_cosine

__all__ = ["Task", "Trainer", "TrainResult", "set_seed"]

log = logging.getLogger(__name__)


class Task(Protocol):
    model: nn.Module
    primary: str  # validation metric that picks the best checkpoint
    greater_is_better: bool

    def num_train(self) -> int: ...

    def param_groups(self) -> list[dict[str, Any]]: ...

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Indices of the batch -> ({"loss": scalar, ...named terms}, report)."""
        ...

    def validate(self) -> dict[str, float]: ...

    def save(self, folder: Path, name: str) -> None: ...

    def load(self, folder: Path, name: str) -> None: ...


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _promote(folder: Path, src: str, dst: str) -> None:
    """Make `<dst>*` files a copy of the `<src>*` ones (atomically each) and drop older checkpoints."""
    for f in folder.glob(f"{src}*"):
        tmp = folder / f".{dst}{f.name[len(src):]}.tmp"
        shutil.copyfile(f, tmp)
        os.replace(tmp, folder / f"{dst}{f.name[len(src):]}")
    for old in folder.glob("ckpt-*"):
        if not old.name.startswith(src):
            old.unlink(missing_ok=True)


class Trainer:
    def __init__(self, task: Task, out: str | Path, *, epochs: int, batch_size: int, lr: float,
                 weight_decay: float = 0.05, warmup: float = 0.05, grad_clip: float = 1.0, seed: int = 0,
                 patience: int = 0, progress: bool = True, rank: int = 0, world_size: int = 1,
                 stop_after: int | None = None, precision: str = "fp32", logger: Any | None = None):
        self.task, self.out = task, Path(out)
        self.epochs, self.batch_size, self.lr, self.wd = epochs, batch_size, lr, weight_decay
        self.warmup, self.grad_clip, self.seed, self.patience = warmup, grad_clip, seed, patience
        self.progress, self.rank, self.world_size = progress, rank, world_size
        self.stop_after = stop_after  # testing aid: simulate an interruption after N epochs
        self.precision = precision  # "bf16": forward under bf16 autocast where the hardware has it
        self.logger = logger if rank == 0 else None  # train/loggers.py: per-step and per-epoch scalars
        self.out.mkdir(parents=True, exist_ok=True)

    def _steps_per_epoch(self) -> int:
        n = self.task.num_train()
        return max(1, n // self.batch_size if n >= self.batch_size else 1)

    def _local_batch(self) -> int:
        """`batch_size` is the global batch: each of the world_size ranks takes an equal share."""
        return max(1, min(self.batch_size, self.task.num_train()) // self.world_size)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.task.num_train(), generator=g)
        # Step s of every rank together covers the same rows as step s of a single process with the
        # same global batch: rank r takes columns [r*b, (r+1)*b) of each global batch.
        spe, b = self._steps_per_epoch(), self._local_batch()
        glob = min(self.batch_size, len(perm))
        steps = perm[:spe * glob].view(spe, glob)  # (steps, global batch)
        return steps[:, self.rank * b:(self.rank + 1) * b].reshape(-1)  # (steps * b,) this rank's share

    def fit(self, resume: bool = True) -> TrainResult:
        set_seed(self.seed + self.rank)
        groups, opt, sched = self._optimizer()
        st = self._resume(opt, sched) if resume else _LoopState()
        if self.world_size > 1:
            broadcast_parameters(self.task.model)  # every rank starts from rank 0's weights, as under DDP
        self._reset_log(st)
        bar = None
        if self.progress and self.rank == 0:
            from crossalign.progress import progress_bar

            bar = progress_bar(total=self.epochs, initial=st.start, desc="train", unit="epoch")
        better = (lambda a, b: a > b) if self.task.greater_is_better else (lambda a, b: a < b)
        stopped = False
        epoch = st.start - 1
        for epoch in range(st.start, self.epochs):
            if self.stop_after is not None and epoch >= self.stop_after:
                break
            t0 = time.time()
            train = self._train_epoch(epoch, groups, opt, sched)
            self.task.model.eval()
            val = {f"val/{k}": v for k, v in self.task.validate().items()}
            metric = val.get(f"val/{self.task.primary}")
            if metric is None:
                raise KeyError(f"validation did not report the primary metric '{self.task.primary}'")
            rec = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3),
                   **train, **val}
            st.history.append(rec)
            improved = st.best is None or better(metric, st.best)
            if improved:
                st.best, st.best_epoch, st.bad = metric, epoch, 0
            else:
                st.bad += 1
            self._commit(epoch, rec, improved, st, opt, sched)
            if bar:
                bar.update(1)
                bar.set_postfix({"loss": f"{train.get('train/loss', float('nan')):.3f}",
                                 f"val {self.task.primary}": f"{metric:.3f}"})
            if self.patience and st.bad >= self.patience:
                stopped = True
                break
        if bar:
            bar.close()
        best = float(st.best) if st.best is not None else float("nan")
        return TrainResult(st.best_epoch, best, epoch + 1, st.history, stopped)

    def _optimizer(self) -> tuple[list[dict[str, Any]], torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW over the task's parameter groups (no decay on scalars) with warmup + cosine decay."""
        groups = _no_decay_for_scalars(self.task.param_groups())
        for g in groups:
            g.setdefault("lr", self.lr)
            g.setdefault("weight_decay", self.wd)
            g["base_lr"] = g["lr"]
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.wd)
        total = self._steps_per_epoch() * self.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, int(self.warmup * total)))
        return groups, opt, sched

    def _resume(self, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR) -> _LoopState:
        """Weights, optimiser, schedule, RNG and loop counters of the last committed epoch, if any."""
        state_file = self.out / "last_state.pt"
        if not state_file.exists():
            return _LoopState()
        st = torch.load(state_file, weights_only=True)
        # The state names the weights of its own epoch, so the two can never be an epoch apart.
        self.task.load(self.out, st.get("ckpt", "last"))
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        ranks = st.get("rng_ranks")  # every rank continues its own dropout stream
        # clone(): set_rng_state on a row view (non-zero storage offset) segfaults in torch 2.13
        torch.set_rng_state(ranks[self.rank].clone() if ranks is not None and len(ranks) == self.world_size
                            else st["rng"])
        log.info("resuming from epoch %d", st["epoch"] + 1)
        return _LoopState(st["epoch"] + 1, st["best"], st["best_epoch"], st["bad"], json.loads(st["history"]))

    def _reset_log(self, st: _LoopState) -> None:
        log_path = self.out / "metrics.jsonl"
        if st.start == 0 and self.rank == 0 and log_path.exists():
            log_path.unlink()
        elif st.start > 0 and self.rank == 0:
            # The log line of an epoch is written before its state commit: a kill in between leaves
            # a line the resumed run writes again. Rewrite the log from the committed history.
            tmp = self.out / ".metrics.jsonl.tmp"
            tmp.write_text("".join(json.dumps(rec) + "\n" for rec in st.history))
            os.replace(tmp, log_path)

    def _train_epoch(self, epoch: int, groups: list[dict[str, Any]], opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LambdaLR) -> dict[str, float]:
        """One pass over this rank's share of the epoch's batches -> mean of every loss term and report."""
        self.task.model.train()
        hook = getattr(self.task, "on_epoch_start", None)  # optional: tasks that refresh state per epoch
        if hook is not None:
            hook(epoch)
        order = self._epoch_order(epoch)
        params = [p for g in groups for p in g["params"]]
        sums: dict[str, float] = {}
        nb = 0
        spe, lb = self._steps_per_epoch(), self._local_batch()
        for s in range(spe):
            idx = order[s * lb:(s + 1) * lb]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            with autocast(self.precision == "bf16"):
                losses, report = self.task.training_forward(idx)
            if losses["loss"].requires_grad:  # GradCache tasks run their own (chunked) backward
                losses["loss"].backward()
            if self.world_size > 1:
                sync_gradients(params, self.world_size)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            opt.step()
            step_lr = opt.param_groups[0]["lr"]  # the rate this step used, before the schedule moves on
            sched.step()
            nb += 1
            scalars = {**{k: float(v.detach()) for k, v in losses.items()}, **report}
            for k, v in scalars.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.logger is not None:
                self.logger.log_metrics({**{f"step/{k}": v for k, v in scalars.items()},
                                         "step/lr": step_lr}, epoch * spe + s + 1)
        return {f"train/{k}": v / max(nb, 1) for k, v in sums.items()}

    def _commit(self, epoch: int, rec: dict[str, Any], improved: bool, st: _LoopState,
                opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR) -> None:
        """Checkpoint the epoch. Epoch-named weights first, then the state that names them (atomic),
        then `last`: a kill at any point leaves a state whose weights are complete and of its epoch."""
        rng_ranks = gather_rng_states() if self.world_size > 1 else None  # collective: all ranks
        if self.rank != 0:
            return
        if improved:
            self.task.save(self.out, "best")
        ckpt = f"ckpt-{epoch:05d}"
        self.task.save(self.out, ckpt)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.logger is not None:
            self.logger.log_metrics(rec, (epoch + 1) * self._steps_per_epoch())
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                 "epoch": epoch, "best": st.best, "best_epoch": st.best_epoch, "bad": st.bad, "ckpt": ckpt,
                 "history": json.dumps(st.history)}
        if rng_ranks is not None:
            state["rng_ranks"] = torch.stack(rng_ranks)
        tmp = self.out / ".last_state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "last_state.pt")
        _promote(self.out, ckpt, "last")


@dataclass
class _LoopState:
    """Where the epoch loop stands: what a resumed run restores."""

    start: int = 0  # first epoch to run
    best: float | None = None
    best_epoch: int = -1
    bad: int = 0  # epochs since the best one
    history: list[dict[str, Any]] = field(default_factory=list)


def _no_decay_for_scalars(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scalar parameters (the logit scale and bias) get no weight decay, as in open_clip: decaying
    log(1/temperature) towards 0 pulls the temperature to 1 and the sigmoid bias towards 0."""
    out: list[dict[str, Any]] = []
    for g in groups:
        params = list(g["params"])
        scalars = [p for p in params if p.ndim == 0]
        out.append({**g, "params": [p for p in params if p.ndim > 0]})
        if scalars:
            out.append({**g, "params": scalars, "weight_decay": 0.0})
    return [g for g in out if g["params"]]

