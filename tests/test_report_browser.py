"""The report in a real browser: Debian's chromium, driven headless by Playwright (no browser download).

Opens the HTML from disk, checks there are no console errors or failed requests, every <img> decoded,
the results tables equal the JSON written beside the page, and keeps a screenshot as a test artefact.
Also: the machine-readable files (CLIP_benchmark JSON, open_clip-style CSV) and two runs side by side.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from crossalign.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("report") / "report.html"
    # Explain the worst failure of two directions only: enough to check the section, fast on CI.
    return build_report([tiny_run], out, failures=2, explain=2, n_boot=200)


def test_machine_readable_files(report) -> None:  # type: ignore[no-untyped-def]
    (entry,) = json.loads(report.json.read_text())
    assert entry["task"] == "zeroshot_retrieval" and entry["model"] == "crossalign"
    m = entry["metrics"]
    # CLIP_benchmark names: image retrieval = text queries finding images.
    assert m["image_retrieval_recall@1"] == m["text->image/R@1"]
    assert m["text_retrieval_recall@5"] == m["image->text/R@5"]
    assert len([k for k in m if k.endswith("/R@1")]) == 12  # 4 views: 12 directions
    lo, hi = entry["intervals"]["text->image"]["R@1"]
    assert lo <= m["text->image/R@1"] <= hi
    # benchmark's validation-tuned set; `encoder` only where two columns share an encoder (none here)
    assert set(entry["baselines"]) == {"cca", "kcca", "procrustes", "ridge", "random"}
    rows = list(csv.DictReader(report.csv.open()))
    assert len(rows) == 1 and float(rows[0]["text->image R@1"]) == pytest.approx(
        m["text->image/R@1"], abs=1e-4
    )
    html = report.html.read_text()
    assert "http://" not in html and "https://" not in html  # nothing fetched from anywhere
    assert "<script" not in html


@pytest.mark.browser
def test_report_in_a_real_browser(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if CHROMIUM is None:
        pytest.skip("chromium missing (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import sync_playwright

    (entry,) = json.loads(report.json.read_text())
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"failed request {req.url}"))
            page.goto(report.html.resolve().as_uri(), wait_until="load")
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, alt: e.alt}))"
            )
            cells = page.eval_on_selector_all(
                "table.results td[data-key], table.baselines td[data-key]",
                "els => els.map(e => [e.dataset.method, e.dataset.key, e.firstChild.textContent.trim()])",
            )
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    # curves, similarity, gallery, rank histogram; failure explanations add more when the run has failures
    assert len(imgs) >= 4 and all(i["ok"] for i in imgs), [i["alt"] for i in imgs if not i["ok"]]
    want = {("crossalign", k): v for k, v in entry["metrics"].items() if "->" in k}
    want.update({(meth, k): v for meth, r in entry["baselines"].items() for k, v in r.items()})
    checked = 0
    for method, key, shown in cells:
        ref = want.get((method, key))
        if ref is None:
            continue
        fmt = "{:.0f}" if key.endswith("MdR") else "{:.3f}"
        assert shown == fmt.format(ref), (method, key, shown, ref)
        checked += 1
    assert checked >= 12 * 5 + 12 * 4  # every direction: 5 metrics of crossalign, R@1 of 4 baselines
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("CROSSALIGN_TEST_ARTIFACTS")  # CI: a folder it uploads; else pytest's tmp dir
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copy2(shot, Path(keep) / "report-screenshot.png"))
    print(f"screenshot: {shot}")


def test_two_runs_side_by_side(tiny_run: Path, tmp_path: Path) -> None:
    files = build_report([tiny_run, tiny_run], tmp_path / "both.html", failures=1, explain=0, n_boot=50)
    html = files.html.read_text()
    assert 'id="compare-table"' in html and html.count('class="results"') == 2
    assert len(json.loads(files.json.read_text())) == 2
    assert len(list(csv.DictReader(files.csv.open()))) == 2
