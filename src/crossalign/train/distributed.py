"""Torch distributed plumbing for training and extraction: process group set-up from the
environment torchrun provides, gradient averaging across ranks, and per-rank seeding.

crossalign never manages processes itself: `torchrun` (or `crossalign ... --nproc N`, which runs
torchrun) starts the workers and sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
this module only reads them.

Why gradients are averaged by hand instead of wrapping the model in DistributedDataParallel: the
task objects call their model directly (and use the logit scale/bias outside `forward`), an
objective may leave a parameter unused (InfoNCE never touches the SigLIP bias), and GradCache
accumulates gradients over several chunk backwards before one optimiser step. One coalesced
all-reduce after the last backward does exactly what DDP's reducer does at that point (average
every gradient over ranks), without those constraints. Initial weights are broadcast from rank 0
as DDP does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from crossalign.align.distributed import DistContext
from crossalign.align.precision import bf16_autocast_pays

__all__ = [
    "autocast",
    "backend_for",
    "barrier",
    "broadcast_parameters",
    "encode_rank_share",
    "encode_sharded",
    "encode_views_share",
    "gather_rng_states",
    "init_from_env",
    "is_launched",
    "rank_seed",
    "shutdown",
    "sync_gradients",
]

log = logging.getLogger(__name__)


def is_launched() -> bool:
    """True when this process was started by torchrun (or anything setting the same variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def backend_for(device: torch.device | None = None) -> str:
    """Gloo on CPUs; with GPUs both, routed by tensor device ("cpu:gloo,cuda:nccl"), so CUDA
    tensors go through NCCL and CPU-side collectives (RNG states, flags) still work.
    `CROSSALIGN_DIST_BACKEND` overrides the choice."""
    if os.environ.get("CROSSALIGN_DIST_BACKEND"):
        return os.environ["CROSSALIGN_DIST_BACKEND"]
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group described by torchrun's environment variables, once.

    Returns the single-process context when no launcher set WORLD_SIZE > 1, so library code can call
    this unconditionally. On GPUs each process takes the device of its LOCAL_RANK.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext.from_env()
    if not is_launched():
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    backend = backend or backend_for()
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # After torchrun restarts the workers they reach the agent's store again, where the dead
        # group's address keys still sit; a per-restart prefix keeps the new group from reading them
        # (seen with torch 2.13: "Gloo connectFullMesh failed ... Connection refused").
        from datetime import timedelta

        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=timedelta(minutes=5))
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f"crossalign/restart-{restart}", store),
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    else:
        dist.init_process_group(backend=backend)
    ctx = DistContext.from_env()
    log.info("rank %d/%d joined (%s)", ctx.rank, ctx.world_size, backend)
    return ctx


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        # Let every rank finish its last collective before any tears the group down: a rank that
        # destroys its Gloo pairs while a peer still uses them can abort that peer at exit.
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _coalesced(tensors: list[torch.Tensor], op) -> None:  # type: ignore[no-untyped-def]
    """Apply one collective to many tensors at once through a flat buffer (fewer, larger messages)."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])  # (sum of numels,)
    op(flat)
    off = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[off:off + n].view_as(t))
        off += n


@torch.no_grad()
def sync_gradients(params: Iterable[nn.Parameter], world_size: int | None = None) -> None:
    """Average `.grad` of every trainable parameter over all ranks (what DDP does after backward).

    A parameter that has a gradient on some rank but not on this one counts as zero there; one that
    has none on any rank keeps `grad=None`, as in a single process (so AdamW skips it, weight decay
    included). Every rank must call this with the same parameter list, in the same order.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = world_size or dist.get_world_size()
    if world == 1:
        return
    ps = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in ps], dtype=torch.float32)
    if ps and ps[0].is_cuda:
        has = has.cuda()
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    ps = [p for p, h in zip(ps, has.tolist()) if h > 0]
    for p in ps:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in ps:
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)  # type: ignore[union-attr]

    def reduce(flat: torch.Tensor) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world)

    for grads in by_dtype.values():
        _coalesced(grads, reduce)


@torch.no_grad()
def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank `src`'s weights and buffers (as DDP does at wrap time)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()]
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t.data)
    for group in by_dtype.values():
        _coalesced(group, lambda flat: dist.broadcast(flat, src))


def gather_rng_states() -> list[torch.Tensor]:
    """Every rank's CPU RNG state (list in rank order), so a resumed run can restore each one."""
    state = torch.get_rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    out = [torch.empty_like(state) for _ in range(dist.get_world_size())]
    dist.all_gather(out, state)  # gloo handles uint8; NCCL would need the state on the GPU
    return out


def rank_seed(seed: int, rank: int) -> int:
    """Distinct, deterministic seed per rank: dropout masks differ between ranks but replay exactly."""
    return seed + 1_000_003 * rank


@contextmanager
def autocast(enabled: bool, device: torch.device | None = None) -> Iterator[None]:
    """bf16 autocast where the hardware runs bf16 natively (CUDA with bf16, a CPU with native bf16);
    a no-op otherwise, where emulated bf16 would be slower than fp32 (align/precision.py)."""
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    ok = enabled and device.type in ("cpu", "cuda") and bf16_autocast_pays(device.type)
    if not ok:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def encode_views_share(manifest, views, ctx: DistContext, *, batch_size: int = 32,  # type: ignore[no-untyped-def]
                       cache_dir=None, progress: bool = False) -> int:
    """Distributed feature extraction: this rank encodes every world-th row of each view into the
    shared content-keyed cache, then waits for the others. Afterwards any rank's `encode_views`
    over the whole manifest finds every row cached, so the table equals a single-process run.
    Returns how many items this rank encoded. The cache folder must be visible to every rank (one
    machine, or a shared filesystem across machines)."""
    from crossalign.data.extract import encode_column
    from crossalign.data.features import build_view_encoder, view_modality
    from crossalign.data.shards import rank_share

    part = rank_share(manifest, ctx.rank, ctx.world_size)
    done = 0
    for v in views:
        if v.column not in manifest.columns:
            continue  # the caller's full-manifest pass reports the missing column
        enc = build_view_encoder(v, manifest)  # sensor shapes are inferred from the whole manifest
        cf = encode_column(part, v.column, enc, batch_size=batch_size, progress=progress, cache_dir=cache_dir,
                           modality=view_modality(v))
        done += cf.encoded
    barrier()
    return done


def encode_rank_share(cfg, ctx: DistContext, progress: bool = False) -> int:  # type: ignore[no-untyped-def]
    """`encode_views_share` for a run config's manifest and views (the training entry point)."""
    from crossalign.data.manifest import load_manifest

    return encode_views_share(load_manifest(cfg.train.data), cfg.model.views, ctx,
                              batch_size=cfg.train.encode_batch_size, progress=progress)


def encode_sharded(source, view, out, ctx: DistContext, *, chunk: int = 1024,  # type: ignore[no-untyped-def]
                   batch_size: int = 64, progress: bool = False) -> int:
    """Stream a sharded manifest's column through an encoder into a FeatureStore at `out`: this
    rank's shards only, chunk by chunk (memory flat in the collection size). Returns rows stored by
    this rank; every rank has finished when it returns."""
    import numpy as np

    from crossalign.data.features import build_view_encoder, view_modality
    from crossalign.data.shards import FeatureStore, encode_stream, iter_rows
    from crossalign.modalities import get_reader

    enc = build_view_encoder(view)
    bar = None
    if progress:
        from crossalign.progress import progress_bar

        bar = progress_bar(desc=f"encode {view.column} [{enc.spec.name}] rank {ctx.rank}", unit="item")

    def embed(raws: list) -> np.ndarray:  # type: ignore[type-arg]
        # From-scratch and tune_last towers store their inputs (lower activations), as the feature cache does.
        fn = enc.preprocess if enc.spec.caches_inputs else enc.encode
        return np.concatenate([fn(raws[s:s + batch_size]).numpy() for s in range(0, len(raws), batch_size)])

    n = encode_stream(iter_rows(source, ctx.rank, ctx.world_size), view.column, embed, FeatureStore(out),
                      read=get_reader(view_modality(view)).read, chunk=chunk, rank=ctx.rank,
                      progress=bar.update if bar is not None else None)
    if bar is not None:  # a tqdm without total has no truth value
        bar.close()
    barrier()
    return n
