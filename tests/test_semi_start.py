"""The closed-form start of semi-supervised runs: with no unpaired items it is the supervised one;
with unpaired items the input standardisation is fitted on paired + unpaired items *before* the
closed form, and nothing refits it afterwards (that moved the inputs under the fitted map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import small_config
from numeric import assert_close_scaled
from safetensors.torch import load_file


def _text_audio(cfg, **train):  # type: ignore[no-untyped-def]
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    cfg.train.start = "closed_form"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_semi_closed_form_start_with_no_unpaired_equals_supervised(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.align import train
    from crossalign.recipes.semi import prepare_semi, train_semi
    from crossalign.semi.config import SemiConfig

    semi = SemiConfig(method="pseudo-pairs", start=0, refresh=1)
    cfg = _text_audio(small_config(scenes_small, tmp_path / "sup", epochs=2))
    data = prepare_semi(cfg, semi, progress=False)
    assert data.unpaired.total() == 0
    train(cfg, resume=False, table=data.table, progress=False)
    run, _ = train_semi(_text_audio(small_config(scenes_small, tmp_path / "semi", epochs=2)), semi, data=data,
                        resume=False, progress=False)
    sup = json.loads((tmp_path / "sup" / "train_result.json").read_text())
    got = json.loads((run / "train_result.json").read_text())
    assert got["candidates"] == sup["candidates"] and got["closed_form"] == sup["closed_form"]
    a = load_file(str(tmp_path / "sup" / "candidates" / "fine_tuned" / "last.safetensors"))
    b = load_file(str(run / "candidates" / "fine_tuned" / "last.safetensors"))
    for k in a:
        assert_close_scaled(b[k], a[k], rtol=1e-6, msg=k)


def test_semi_closed_form_is_fitted_in_the_unpaired_standardisation(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.align.io import load_run
    from crossalign.recipes.align import _build, _spec_for
    from crossalign.recipes.semi import prepare_semi, train_semi
    from crossalign.semi.config import SemiConfig
    from crossalign.train.align_task import AlignmentTask
    from crossalign.train.start import apply_closed_form, fit_closed_form

    semi = SemiConfig(method="pseudo-pairs", paired_fraction=0.5, start=0)
    cfg = _text_audio(small_config(scenes_small, tmp_path / "semi", epochs=1))
    data = prepare_semi(cfg, semi, progress=False)
    assert data.unpaired.total() > 0
    run, _ = train_semi(cfg, semi, data=data, resume=False, progress=False)
    got = json.loads((run / "train_result.json").read_text())

    # The same closed form by hand: statistics on paired + unpaired items, then the fit, then nothing.
    tr, va = data.table.split("train"), data.table.split("val")
    cfg_cf = _text_audio(small_config(scenes_small, tmp_path / "x", epochs=1))
    cfg_cf.model.head.linear_path = True
    specs = {v.column: _spec_for(v, data.table) for v in cfg_cf.model.views}
    model = _build(cfg_cf, specs, tr, data.unpaired.features)
    for c in ("text", "audio"):
        allx = np.concatenate([tr.features[c], data.unpaired.features[c]]).astype(np.float32)
        assert_close_scaled(model.linear[c].norm.mean.flatten(), torch.from_numpy(allx.mean(0)).flatten(),
                            rtol=1e-5, msg=c)
    cf = fit_closed_form(model, tr, va, seed=cfg.train.seed, extra=data.unpaired.features)
    assert cf is not None and cf.method == got["closed_form"]["method"] and cf.params == got["closed_form"]["params"]
    apply_closed_form(model, cf)
    v = AlignmentTask(model, cfg_cf, tr, va).validate()
    assert v["mean/R@1"] == got["candidates"]["closed_form"]["val_mean/R@1"]
    if got["winner"] == "closed_form":  # the saved run is that very model
        saved, _ = load_run(run)
        for k, t in model.state_dict().items():
            assert_close_scaled(saved.state_dict()[k], t, rtol=1e-6, msg=k)

    # `none` ignores the unpaired items, statistics included: its closed form is the pairs-only one.
    none = SemiConfig(method="none", paired_fraction=0.5)
    run_n, _ = train_semi(_text_audio(small_config(scenes_small, tmp_path / "none", epochs=1)), none, data=data,
                          resume=False, progress=False)
    m_n, _ = load_run(run_n)
    pairs_mean = torch.from_numpy(tr.features["text"].astype(np.float32).mean(0)).flatten()
    assert_close_scaled(m_n.linear["text"].norm.mean.flatten(), pairs_mean, rtol=1e-5, msg="none: pairs only")
