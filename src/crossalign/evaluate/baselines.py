"""Classical baselines on the same cached features and splits as crossalign's heads, tuned as fairly.

Per pair of views, each baseline is fitted on the train split with every hyperparameter chosen on
the validation split (`evaluate/tuning.py`); only then is the test split read and scored exactly
as crossalign's heads are:
- `cca`: exact regularised CCA on standardised PCA scores (dims incl. all up to 512, ridge 1e-3..10,
  number of components, components weighted by their canonical correlation);
- `kcca`: the same on Nyström RBF features (landmarks and bandwidth tuned too);
- `ridge`: least squares from one view's PCA space to the other's (dims, alpha, direction);
- `procrustes`: orthogonal rotation between the two PCA spaces (dims, whitening);
- `encoder`: the encoders' own cosine, where both columns come from the same encoder;
- `asif`: training-free relative representations over the train pairs as anchors (k, p tuned);
- `random`: an untrained random projection of each view (the floor).

Every baseline but `random` also gets the hubness correction crossalign's `train.hubness: auto` gets
(CSLS, evaluate/csls.py: "off" or the best k and weight on validation, banks of its own projected
training items), so a corrected model is never compared with plain-cosine baselines
(`hubness=False` for the plain ones).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

from crossalign.data.features import FeatureTable
from crossalign.evaluate.closed_form import PairScorer
from crossalign.evaluate.csls import MAX_BANK, OFF, choose_pair, csls_vectors
from crossalign.evaluate.retrieval import retrieval_metrics
from crossalign.evaluate.tuning import TUNERS, Fitted, ViewData

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "baseline_vectors",
    "fit_baselines",
    "project",
    "run_baselines",
    "selection_split",
    "view_data",
]

log = logging.getLogger(__name__)
BASELINES = TUNERS
DEFAULT_METHODS = ["cca", "kcca", "ridge", "procrustes", "encoder", "asif", "random"]


def selection_split(table: FeatureTable, train_split: str, val_split: str,
                    seed: int = 0) -> tuple[FeatureTable, FeatureTable]:
    """(fit rows, selection rows): the validation split, or 10 % of train held out when there is none."""
    tr, va = table.split(train_split), table.split(val_split)
    if len(va) >= 2:
        return tr, va
    hold = np.zeros(len(tr), bool)
    hold[np.random.default_rng(seed).permutation(len(tr))[:max(2, len(tr) // 10)]] = True
    return tr.subset(~hold), tr.subset(hold)


def view_data(tr: FeatureTable, va: FeatureTable, columns: list[str], max_k: int = 512) -> dict[str, ViewData]:
    """Per view: PCA basis fitted on train, train and validation scores (shared by every method)."""
    out = {}
    for c in columns:
        spec = tr.specs.get(c)
        key = (spec.name, tuple(spec.output_shape), spec.version) if spec is not None and not spec.from_scratch else ()
        out[c] = ViewData.fit(tr.features[c], va.features[c], max_k, key)
    return out


def _bar(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    """A tqdm bar on a terminal; a few plain lines otherwise (logs stay short)."""
    if not enabled:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc="baselines", unit="fit", disable=False, mininterval=0.5 if tty else 30.0,
                file=sys.stderr)


def fit_baselines(table: FeatureTable, columns: list[str], train_split: str = "train",
                  methods: list[str] | None = None, seed: int = 0, val_split: str = "val", progress: bool = False,
                  selected: dict[str, Any] | None = None) -> dict[str, dict[tuple[str, str], Fitted]]:
    """{method: {(a, b): Fitted}}: each baseline fitted on train with its hyperparameters chosen on
    validation; the test split is not read. `selected` receives what validation chose."""
    methods = methods or DEFAULT_METHODS
    unknown = [m for m in methods if m not in TUNERS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(TUNERS)}")
    tr, va = selection_split(table, train_split, val_split, seed)
    score = PairScorer(va.groups(), len(va))
    views = view_data(tr, va, columns)
    pairs = [(a, b) for i, a in enumerate(columns) for b in columns[i + 1:]]
    bar = _bar(len(methods) * len(pairs), progress)
    fits: dict[str, dict[tuple[str, str], Fitted]] = {}
    for name in methods:
        fits[name] = {}
        for a, b in pairs:
            f = TUNERS[name](views[a], views[b], score, seed=seed)
            if f is not None:
                fits[name][(a, b)] = f
            if bar is not None:
                bar.set_postfix_str(f"{name} {a}-{b}", refresh=False)
                bar.update(1)
    if bar is not None:
        bar.close()
    if selected is not None:
        selected.update({n: {f"{a}-{b}": {"val": round(f.score, 6), "params": f.params} for (a, b), f in fs.items()}
                         for n, fs in fits.items()})
    return fits


def project(f: Fitted, xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both views' features -> unit vectors in the fitted baseline's common space."""
    za, zb = (np.asarray(z, np.float32) for z in (f.maps[0](xa), f.maps[1](xb)))
    return (za / np.linalg.norm(za, axis=1, keepdims=True).clip(1e-9),
            zb / np.linalg.norm(zb, axis=1, keepdims=True).clip(1e-9))


def _hub_choices(fits: dict[str, dict[tuple[str, str], Fitted]], tr: FeatureTable, va: FeatureTable,
                 seed: int) -> dict[tuple[str, str, str], tuple[str, dict[str, Any], np.ndarray, np.ndarray]]:
    """{(method, a, b): (CSLS choice, report, bank_a, bank_b)} for every fitted pair but `random`'s."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(tr))[:MAX_BANK])
    out = {}
    for name, fs in fits.items():
        if name == "random":
            continue
        for (a, b), f in fs.items():
            bank_a, bank_b = project(f, np.asarray(tr.features[a])[rows], np.asarray(tr.features[b])[rows])
            za, zb = project(f, np.asarray(va.features[a]), np.asarray(va.features[b]))
            win, scores = choose_pair(za, zb, bank_a, bank_b, va.groups())
            report = {"chosen": win, "val_gain": round(scores[win][0] - scores[OFF][0], 6)}
            out[(name, a, b)] = (win, report, bank_a, bank_b)
    return out


def baseline_vectors(table: FeatureTable, columns: list[str], train_split: str = "train", test_split: str = "test",
                     methods: list[str] | None = None, seed: int = 0, val_split: str = "val", progress: bool = False,
                     selected: dict[str, Any] | None = None, hubness: bool = True
                     ) -> tuple[dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]], np.ndarray | None]:
    """({method: {(a, b): (test vectors of a, of b)}}, the test split's groups): every baseline fitted,
    tuned and (`hubness`) CSLS-chosen on validation before the test split is first read.

    `selected`, when given, receives {method: {"a-b": {"val": score, "params": {...}, "csls": {...}}}}:
    what the validation split chose."""
    fits = fit_baselines(table, columns, train_split, methods, seed, val_split, progress, selected)
    hub = _hub_choices(fits, *selection_split(table, train_split, val_split, seed), seed) if hubness else {}
    if selected is not None:
        for (name, a, b), (_, report, _, _) in hub.items():
            selected[name][f"{a}-{b}"]["csls"] = report
    te = table.split(test_split)  # first read of the test split
    out: dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]] = {}
    for name, fs in fits.items():
        out[name] = {}
        for (a, b), f in fs.items():
            za, zb = project(f, te.features[a], te.features[b])
            if (name, a, b) in hub:
                win, _, bank_a, bank_b = hub[(name, a, b)]
                za, zb = csls_vectors(za, zb, bank_a, bank_b, win)
            out[name][(a, b)] = (za, zb)
    return out, te.groups()


def run_baselines(table: FeatureTable, columns: list[str], train_split: str = "train", test_split: str = "test",
                  methods: list[str] | None = None, seed: int = 0, val_split: str = "val", progress: bool = False,
                  selected: dict[str, Any] | None = None, hubness: bool = True) -> dict[str, dict[str, float]]:
    """{method: {"a->b/R@1": ...}} on the test split for every ordered pair of views (`baseline_vectors`)."""
    from crossalign.evaluate.evaluators import mean_over_directions

    vecs, groups = baseline_vectors(table, columns, train_split, test_split, methods, seed, val_split, progress,
                                    selected, hubness)
    out: dict[str, dict[str, float]] = {}
    for name, pairs in vecs.items():
        res: dict[str, float] = {}
        for (a, b), (za, zb) in pairs.items():
            for q, d, key in ((za, zb, f"{a}->{b}"), (zb, za, f"{b}->{a}")):
                for k, v in retrieval_metrics(q, d, groups).items():
                    res[f"{key}/{k}"] = v
        if not res:
            continue
        res.update(mean_over_directions(res))
        out[name] = res
    return out
