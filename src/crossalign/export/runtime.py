"""Run an exported ONNX folder on raw values with onnxruntime: the reference for what a user of the
files does (tokenise / resize / compute features as the metadata says, then run the view's file).

Features for head-only views come from the crossalign encoder named in the metadata; the ONNX
files themselves need nothing from crossalign.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossalign.export.onnx import onnx_session, run_onnx

__all__ = ["OnnxEmbedder", "read_export_manifest"]


def read_export_manifest(folder: str | Path) -> dict[str, Any]:
    """`export.json` of an exported folder, with a clear error naming the file when it is not one."""
    path = Path(folder) / "export.json"
    if path.is_file() and path.stat().st_size > 16 << 20:  # a real one is a few KB
        raise ValueError(f"{path}: {path.stat().st_size} bytes is too large for an export manifest")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: not a crossalign export (no export.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "crossalign-export":
        raise ValueError(f"{path}: not a crossalign export manifest (kind != crossalign-export)")
    return meta


class OnnxEmbedder:
    """Raw values -> (N, dim) unit-norm vectors through the ONNX files of an `--format onnx` export."""

    def __init__(self, folder: str | Path, threads: int = 0):
        self.folder = Path(folder)
        meta = read_export_manifest(self.folder)
        self.views: dict[str, dict[str, Any]] = {v["column"]: v for v in meta.get("onnx", [])}
        if not self.views:
            raise ValueError(f"{self.folder}/export.json lists no ONNX files")
        self.threads = threads
        self._sessions: dict[str, Any] = {}
        self._prep: dict[str, Any] = {}

    def session(self, col: str) -> Any:
        if col not in self.views:
            raise ValueError(f"no ONNX file for view '{col}'; exported: {', '.join(self.views)}")
        if col not in self._sessions:
            name = Path(self.views[col]["file"]).name  # the manifest names a file inside this folder only
            self._sessions[col] = onnx_session(self.folder / name, self.threads)
        return self._sessions[col]

    def inputs(self, col: str, raws: Sequence[Any]) -> dict[str, np.ndarray]:
        """Raw items as crossalign's readers return them -> the view file's input arrays."""
        v = self.views[col]
        kind = v["kind"]
        if kind == "text-tower":
            if col not in self._prep:
                from transformers import AutoTokenizer

                self._prep[col] = AutoTokenizer.from_pretrained(str(self.folder / Path(v["tokenizer"]).name))
            enc = self._prep[col](list(raws), padding=True, truncation=True, max_length=int(v["max_length"]),
                                  return_tensors="np")
            return {"input_ids": enc["input_ids"].astype(np.int64),
                    "attention_mask": enc["attention_mask"].astype(np.int64)}
        if kind == "image-tower":
            from PIL import Image

            s = int(v["size"])
            arrs = [np.asarray(im.convert("RGB").resize((s, s), Image.BICUBIC), dtype=np.float32) for im in raws]
            px = np.ascontiguousarray(np.stack(arrs).transpose(0, 3, 1, 2) / 255.0)  # (B, H, W, 3) -> (B, 3, S, S)
            feed = {"pixels": px}
            if "color" in v:
                import torch

                from crossalign.encoders.efficientnet import color_features

                feed["color"] = color_features(torch.from_numpy(px), int(v["color"]["args"]["grid"])).numpy()
            return feed
        if kind == "sensor-tower":
            return {"inputs": np.stack([np.asarray(a, dtype=np.float32) for a in raws])}
        if col not in self._prep:  # head on features: the named crossalign encoder computes them
            from crossalign.encoders import EncoderSpec, build_encoder

            spec = EncoderSpec.from_dict(v["feature_extractor"]["encoder"])
            self._prep[col] = build_encoder(spec.name, modality=spec.modality, **spec.options)
        return {"features": self._prep[col].encode(list(raws)).numpy().astype(np.float32)}

    def embed_raw(self, col: str, raws: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        sess = self.session(col)
        out = [run_onnx(sess, self.inputs(col, raws[s:s + batch_size])) for s in range(0, len(raws), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, int(self.views[col]["dim"])), np.float32)
