"""`crossalign task train|eval|predict`: fused downstream tasks over aligned features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossalign.cli.common import LogOpt, log_specs
from crossalign.cli.inputs import InputOpt, gather_inputs

app = typer.Typer(no_args_is_help=True, help="Fusion + task heads: train, evaluate, predict.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="task")


@app.command("train")
def train(
    task: Annotated[str, typer.Option(help="report-consistency | masked-attribute | CONFIG.yaml (your own task)")],
    data: Annotated[Path | None, typer.Option(help="scenes manifest/folder, or a manifest with label/tags")] = None,
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/task"),
    init: Annotated[Path | None, typer.Option(help="alignment run that initialises the projections")] = None,
    fusion: Annotated[str | None, typer.Option(help="concat | gated | cross-attention")] = None,
    modalities: Annotated[str | None, typer.Option(help="comma-separated columns, e.g. text,image")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    align_weight: Annotated[float | None, typer.Option(help="weight of the alignment loss (0: task only)")] = None,
    label_fraction: Annotated[float | None, typer.Option(help="share of training labels to use")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    word_evidence: Annotated[str | None, typer.Option(
        help="tagging: per-word evidence from the aligned space: auto (default) | "
                                                "occlusion-tokens | occlusion | none")] = None,
    log: LogOpt = None,
) -> None:
    """Train a fused model (multi-task: task loss + alignment loss) and print its test report."""
    from crossalign.datasets.scenes.tasks import BUILTIN_TASKS
    from crossalign.fuse.config import TaskConfig, load_task_config
    from crossalign.recipes.task import train_task

    over = {"data": str(data) if data else None, "out": str(out), "init": str(init) if init else None,
            "fusion": fusion, "epochs": epochs, "align_weight": align_weight, "label_fraction": label_fraction,
            "seed": seed, "word_evidence": word_evidence, "modalities": [m.strip() for m in modalities.split(",")] if modalities else None}
    try:
        if task in BUILTIN_TASKS:
            cfg = TaskConfig.from_dict({"task": task, **{k: v for k, v in over.items() if v is not None}})
        elif Path(task).exists():
            cfg = load_task_config(task, **over)
        else:
            raise ValueError(f"--task: '{task}' is neither a built-in task ({', '.join(BUILTIN_TASKS)}) nor a file")
        if not cfg.data:
            raise ValueError("--data is required (or `data:` in the task config)")
        run, result, ev = train_task(cfg, log=log_specs(log))
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(ev["report"])
    typer.echo(f"run: {run} (best epoch {result.best_epoch}, {ev['split']} split, {ev['rows']} rows)")


@app.command("eval")
def evaluate(
    run: Annotated[Path, typer.Option(help="task run folder")],
    data: Annotated[Path | None, typer.Option(help="data to evaluate (default: the training data)")] = None,
    split: Annotated[str, typer.Option()] = "test",
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the metrics here")] = None,
) -> None:
    """sklearn classification report (token + entity level for tagging) and the score with each
    modality removed."""
    from crossalign.fuse.run import evaluate_run

    try:
        ev = evaluate_run(run, data, split, progress=True)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(ev["report"])
    if json_out:
        json_out.write_text(json.dumps({k: v for k, v in ev.items() if k != "report"}, indent=2))


def _styled(word: str, tag: str | None) -> str:
    if tag == "contradicted":
        return typer.style(f"[{word}]", fg="red", bold=True)
    if tag and tag != "O":
        return typer.style(word, fg="green")
    return word


@app.command("predict")
def predict(
    run: Annotated[Path, typer.Option(help="task run folder")],
    text: Annotated[str | None, typer.Option(help="text input")] = None,
    image: Annotated[Path | None, typer.Option(help="image file")] = None,
    audio: Annotated[Path | None, typer.Option(help="audio file")] = None,
    sensor: Annotated[Path | None, typer.Option(help="sensor array (.npy/.csv)")] = None,
    input: InputOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Tag the words of one text (contradicted words in red brackets) or classify one item, from
    whichever modalities are given; the others count as missing."""
    from dataclasses import asdict

    from crossalign.fuse.run import load_task_run
    from crossalign.fuse.run import predict as _predict

    r = load_task_run(run)
    given = {m: str(v) for m, v in gather_inputs({"text": text, "image": image, "audio": audio, "sensor": sensor},
                                                   input).items()}
    inputs = {c: [v] for c, v in given.items() if c in r.modalities}
    ignored = [c for c in given if c not in r.modalities]
    if ignored:
        typer.echo(f"note: this run does not use {', '.join(ignored)}", err=True)
    try:
        p = _predict(r, inputs, base_dir=Path.cwd())[0]
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    if json_out:
        typer.echo(json.dumps(asdict(p)))
        return
    if r.kind == "tag":
        typer.echo(" ".join(_styled(w, t) for w, t in zip(p.words or [], p.tags or [])))
        for w, t, q in zip(p.words or [], p.tags or [], p.tag_probs or []):
            if t and t != "O":
                typer.echo(f"  {w:<12} {t:<14} {q:.2f}")
    else:
        top = sorted((p.probs or {}).items(), key=lambda kv: -kv[1])[:3]
        typer.echo(f"{p.label}   (" + ", ".join(f"{c} {v:.2f}" for c, v in top) + ")")
