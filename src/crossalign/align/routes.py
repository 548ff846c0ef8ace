"""Per-pair routing: every pair of views served by the candidate that was best for it on validation.

One joint space is a compromise between pairs: on emoji (four views) a CCA fitted for the
Chinese/English names alone beats any single space by 3-8 points on that pair. A routed model keeps
the joint space *and* gives each pair of views its own block of the output vector:

    z(view c) = concat over all pairs (a, b) of  [ route_ab(c)  if c in (a, b)  else 0 ] / sqrt(V - 1)

where `route_ab(c)` is the unit vector of c in the space pair (a, b) is routed to: the joint model's
embedding (`joint`), that pair's tuned closed form (`cca`, `kcca`, `ridge`, `procrustes`, `encoder`, `semi_cca`:
a `LinearPath` as wide as its components, a Nyström front for `kcca`) or ASIF relative
representations (`asif`). Two views a != b share exactly one non-zero block, so
<z(a), z(b)> = <route_ab(a), route_ab(b)> / (V - 1): retrieval a -> b ranks exactly as in that pair's
own space, while every vector stays one unit vector of one space, so evaluation, the FAISS index,
`serve` and ONNX export work unchanged. Cost: one block per pair (`AlignmentModel.out_dim`: `dim` for
a joint pair, the closed form's components, or the number of ASIF anchors), and cosines between two
views are scaled by 1 / (V - 1) (same-view cosines average the view's blocks).

A pair may also be routed to a *mixture* (`{"method": "mix", "parts": [{"weight": w1, "method": ...},
...]}`, weights summing to 1): its block is sqrt(w1) u1 (+) sqrt(w2) u2 (+) ... of the parts' unit
vectors, still a unit vector, so <block_a, block_b> = sum_i w_i cos_i(a, b): a convex combination of
the parts' similarity matrices, as wide as the parts together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.align.heads import LinearPath

__all__ = ["AnchorBank", "Router", "route_key", "route_parts", "CLOSED_FORMS", "MEMBER", "MIX"]

# held by a LinearPath; semi_cca: a CCA whose PCA axes also come from unpaired items (train/start.py)
CLOSED_FORMS = ("cca", "kcca", "ridge", "procrustes", "encoder", "semi_cca")
MIX = "mix"
MEMBER = "member"  # another trained model of the same views (ModelConfig.members)


def route_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def route_parts(key: str, r: dict) -> list[tuple[float, dict, str]]:
    """[(weight, single route, module key)] of one pair's route: a mixture's parts (module key
    `a|b@method`), or the route itself with weight 1 (module key `a|b`, as runs saved before mixtures)."""
    if r.get("method") != MIX:
        return [(1.0, r, key)]
    parts = r.get("parts")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "method" in p for p in parts):
        raise ValueError(f"model.routes['{key}']: a mix needs 'parts', a list of routes with a 'method' each")
    methods = [p["method"] for p in parts]
    weights = [float(p.get("weight", -1)) for p in parts]
    if MIX in methods or len(set(methods)) != len(methods):
        raise ValueError(f"model.routes['{key}']: a mix's parts are distinct single methods, not {methods}")
    if min(weights) <= 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"model.routes['{key}']: a mix's weights are > 0 and sum to 1, not {weights}")
    return [(w, p, f"{key}@{p['method']}") for w, p in zip(weights, parts)]


class AnchorBank(nn.Module):
    """ASIF's anchors of one view (Norelli et al. 2023): the train items, standardised with their own
    statistics and unit length. Buffers only (saved with the run); shared by every pair routed to ASIF."""

    def __init__(self, in_shape: tuple[int, ...], n: int):
        super().__init__()
        d = math.prod(in_shape)
        self.register_buffer("mu", torch.zeros(d))
        self.register_buffer("sd", torch.ones(d))
        self.register_buffer("anchors", torch.zeros(n, d))  # (n, D) unit rows

    def forward(self, x: torch.Tensor, k: int, p: float) -> torch.Tensor:
        """x (B, ...) -> (B, n): cosine to every anchor, all but the top k zeroed, clipped at 0, ** p.
        The same arithmetic as `semi.asif.RelativeRep` (which the `asif` baseline uses)."""
        z = (x.float().flatten(1) - self.mu) / self.sd  # (B, D)
        s = F.normalize(z, dim=-1) @ self.anchors.T  # (B, n)
        if k < self.anchors.shape[0]:  # a static shape: an ONNX trace keeps the branch it took
            cut = s.topk(k, dim=1).values[:, -1:]  # (B, 1) k-th largest
            s = torch.where(s >= cut, s, torch.zeros_like(s))
        return F.normalize(s.clamp(min=0.0) ** p, dim=-1)


class Router(nn.Module):
    """The blocks of a routed model. `routes`: `ModelConfig.routes` ({"a|b": {"method": ...}}, every
    pair of `columns`); `in_shapes`: what each view's closed form reads (None: no closed form, a
    fine-tuned pretrained tower; such a view's pairs can only be routed to `joint`)."""

    def __init__(self, columns: list[str], routes: dict[str, dict], in_shapes: dict[str, tuple[int, ...] | None],
                 dim: int, members: dict[str, nn.Module] | None = None):
        super().__init__()
        # the model's members (other trained models of these views): a plain dict, so their weights
        # stay the model's (`members.*`) and are not saved twice under `router.`
        self.members: dict[str, nn.Module] = dict(members or {})
        self.pairs = [(a, b) for i, a in enumerate(columns) for b in columns[i + 1:]]
        self.routes = {route_key(a, b): dict(routes.get(route_key(a, b)) or {"method": "joint"}) for a, b in self.pairs}
        self.paths = nn.ModuleDict()
        self.anchors = nn.ModuleDict()
        self.widths: list[int] = []
        for a, b in self.pairs:
            key = route_key(a, b)
            self.widths.append(sum(self._build(a, b, key, r, mkey, in_shapes, dim)
                                   for _, r, mkey in route_parts(key, self.routes[key])))
        for p in self.parameters():  # fixed solutions chosen on validation: nothing here trains
            p.requires_grad_(False)
        self.count = {c: sum(c in p for p in self.pairs) for c in columns}

    def _build(self, a: str, b: str, key: str, r: dict, mkey: str, in_shapes: dict[str, tuple[int, ...] | None],
               dim: int) -> int:
        """The modules of one single route (a whole pair's, or one part of a mixture); returns its width."""
        method = r["method"]
        if method != "joint" and (in_shapes.get(a) is None or in_shapes.get(b) is None):
            raise ValueError(f"model.routes['{key}']: {method} needs both views' inputs (a fine-tuned "
                             "pretrained tower reads raw items); only 'joint' fits this pair")
        if method == "joint":
            return dim
        if method == MEMBER:
            if r.get("member") not in self.members:
                raise ValueError(f"model.routes['{key}']: member {r.get('member')!r} is not one of model.members "
                                 f"{sorted(self.members)}")
            return dim
        if method in CLOSED_FORMS:
            kern, width = r.get("kernel") or {}, int(r.get("width", dim))  # as many components as it kept
            self.paths[mkey] = nn.ModuleDict({c: LinearPath(in_shapes[c], width,  # type: ignore[arg-type]
                                                            tuple(kern[c]) if c in kern else None) for c in (a, b)})
            return width
        if method == "asif":
            n = int(r["anchors"])
            for c in (a, b):
                if c not in self.anchors:
                    self.anchors[c] = AnchorBank(in_shapes[c], n)  # type: ignore[arg-type]
                elif self.anchors[c].anchors.shape[0] != n:
                    raise ValueError(f"model.routes['{key}']: {n} anchors, another ASIF route of '{c}' has "
                                     f"{self.anchors[c].anchors.shape[0]}")
            return n
        raise ValueError(f"model.routes['{key}']: unknown method {method!r}; known: joint, asif, {MEMBER}, {MIX}, "
                         + ", ".join(CLOSED_FORMS))

    @property
    def out_dim(self) -> int:
        return sum(self.widths)

    @property
    def blocks(self) -> dict[str, tuple[int, int]]:
        """{"a|b": (start, end)}: where each pair's block lies in the routed vector."""
        ends = [sum(self.widths[:i + 1]) for i in range(len(self.widths))]
        return {route_key(a, b): (e - w, e) for (a, b), w, e in zip(self.pairs, self.widths, ends)}

    def block(self, col: str, key: str, joint: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """The unit vector of `col` in the space pair `key` is routed to: (B, width). A mixture
        concatenates its parts' unit vectors, each scaled by sqrt(weight)."""
        parts = route_parts(key, self.routes[key])
        if len(parts) == 1:
            return self._single(col, parts[0][1], parts[0][2], joint, src)
        return torch.cat([self._single(col, r, mkey, joint, src) * math.sqrt(w) for w, r, mkey in parts], 1)

    def _single(self, col: str, r: dict, mkey: str, joint: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        if r["method"] == "joint":
            return joint
        if r["method"] == "asif":
            return self.anchors[col](src, int(r["k"]), float(r["p"]))
        if r["method"] == MEMBER:  # the member's own joint embedding (its tower reads the raw input, as a linear path does)
            return self.members[r["member"]].embed(col, src)  # type: ignore[operator]
        return F.normalize(self.paths[mkey][col](src), dim=-1)

    def forward(self, col: str, joint: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """(B, dim) joint embedding + the view's input -> (B, out_dim) unit vectors."""
        parts = []
        for (a, b), w in zip(self.pairs, self.widths):
            if col in (a, b):
                parts.append(self.block(col, route_key(a, b), joint, src))
            else:
                parts.append(joint.new_zeros(joint.shape[0], w))
        return torch.cat(parts, 1) / math.sqrt(max(1, self.count[col]))  # (B, out_dim)
