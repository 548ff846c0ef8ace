"""ONNX export: one file per view (`<column>.onnx`), dynamic batch axis, metadata inside and beside.

Uses the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`): the dynamo exporter needs
`onnxscript`, which is not a dependency. Every file is checked against onnxruntime on its tracing
inputs right after export; the largest absolute difference is recorded in its metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crossalign.align.model import AlignmentModel
from crossalign.export.views import ViewPlan, plan_views, tower_of

__all__ = ["OPSET", "PARITY_TOL", "export_onnx", "onnx_session", "run_onnx"]

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOL = 1e-4  # max abs difference torch vs onnxruntime; vectors are unit norm, so this is relative


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # no warnings about unused initialisers on stdout
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(session.run(["embedding"], inputs)[0])


def _feed(plan: ViewPlan, tensors: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in zip(plan.inputs, tensors)}


def export_view(plan: ViewPlan, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write `path` for one view and check it against onnxruntime; returns the file's metadata."""
    import onnx

    plan.module.eval()
    with torch.inference_mode():
        ref = plan.module(*plan.example).float().numpy()
    # Transformers' sdpa attention masks do not trace with the TorchScript exporter: eager attention
    # (same numbers) while exporting only, so the torch module keeps its fast path afterwards.
    cfgs = [m.config for m in plan.module.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    saved = [c._attn_implementation for c in cfgs]
    try:
        for c in cfgs:
            c._attn_implementation = "eager"
        with torch.no_grad():
            torch.onnx.export(plan.module, plan.example, str(path), input_names=plan.inputs,
                              output_names=["embedding"], dynamic_axes=plan.dynamic_axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
    finally:
        for c, v in zip(cfgs, saved):
            c._attn_implementation = v
    got = run_onnx(onnx_session(path), _feed(plan, plan.example))
    diff = float(np.abs(got - ref).max())
    if not diff <= PARITY_TOL:
        raise RuntimeError(f"{path.name}: onnxruntime differs from torch by {diff:.2e} (> {PARITY_TOL})")
    info = {"file": path.name, "column": plan.column, "modality": plan.modality, "kind": plan.kind,
            "inputs": plan.inputs, "output": "embedding", "opset": OPSET, "dynamic_axes":
            {k: {str(a): n for a, n in v.items()} for k, v in plan.dynamic_axes.items()},
            "parity_max_abs_diff": diff, **plan.meta, **meta}
    m = onnx.load(str(path))
    m.doc_string = f"crossalign view '{plan.column}' ({plan.kind}) -> unit-norm shared-space embedding"
    entry = m.metadata_props.add()
    entry.key, entry.value = "crossalign", json.dumps(info)
    onnx.save(m, str(path))
    return info


def export_onnx(model: AlignmentModel, out: Path, columns: list[str] | None = None, towers: bool = True,
                meta: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None
                ) -> list[dict[str, Any]]:
    """Every (or the chosen) view of a loaded run -> `out/<column>.onnx` + tokenizer folders."""
    out.mkdir(parents=True, exist_ok=True)
    infos = []
    for plan in plan_views(model, columns, towers):
        if progress:
            progress(f"exporting view '{plan.column}' ({plan.kind}) ...")
        if plan.kind == "text-tower":  # the tokenizer travels with the file that needs its ids
            tower_of(model, plan.column).tokenizer.save_pretrained(str(out / plan.meta["tokenizer"]))  # type: ignore[union-attr]
        info = export_view(plan, out / f"{plan.column}.onnx", {"dim": model.out_dim, **(meta or {})})
        log.info("exported %s (%s), onnxruntime parity %.1e", info["file"], plan.kind, info["parity_max_abs_diff"])
        infos.append(info)
    return infos
