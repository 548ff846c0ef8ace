"""`crossalign bridge train|eval` and `crossalign ask`: thin wrappers over `crossalign.bridge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import LogOpt, log_specs
from crossalign.cli.inputs import InputOpt, gather_inputs

app = typer.Typer(no_args_is_help=True, help="Language-model bridge: shared-space embedding -> prefix -> LM.")


@app.command("train")
def train(run: Annotated[Path, typer.Argument(help="crossalign run folder (its shared space feeds the LM)")],
          data: Annotated[Path, typer.Option(help="scenes-style manifest or folder (captions + objects)")],
          out: Annotated[Optional[Path], typer.Option(help="bridge folder (default RUN/bridge)")] = None,
          lm: Annotated[str, typer.Option(help="'smollm2' (packaged) or hf:<id or folder>")] = "smollm2",
          train_on: Annotated[str, typer.Option(help="view columns whose embeddings train it, comma-separated")] = "image",
          projector: Annotated[str, typer.Option(help="linear, mlp or slots (scenes: per-object attribute words)")] = "mlp",
          prefix_tokens: Annotated[int, typer.Option(help="k prefix vectors (linear, mlp)")] = 4,
          free_tokens: Annotated[int, typer.Option(help="slots: learned vectors after the object words")] = 4,
          slot_epochs: Annotated[int, typer.Option(help="slots: attribute pre-training epochs (no LM, seconds)")] = 300,
          aux_weight: Annotated[float, typer.Option(help="slots: attribute loss weight beside the LM loss")] = 1.0,
          qa_per_row: Annotated[int, typer.Option(help="question-answer examples per training row")] = 1,
          max_rows: Annotated[int, typer.Option(help="training rows (0: all); CPU time grows with it")] = 320,
          epochs: Annotated[int, typer.Option()] = 1,
          batch_size: Annotated[int, typer.Option()] = 16,
          lr: Annotated[float, typer.Option()] = 2e-3,
          tasks: Annotated[str, typer.Option(help="caption,qa")] = "caption,qa",
          lora_r: Annotated[int, typer.Option(help="> 0: second stage with LoRA of this rank")] = 0,
          lora_epochs: Annotated[int, typer.Option(help="epochs of the LoRA stage")] = 1,
          lora_lr: Annotated[float, typer.Option(help="learning rate of the LoRA adapters")] = 5e-4,
          val_rows: Annotated[int, typer.Option(help="validation rows for the per-epoch LM loss (CPU time)")] = 24,
          lora_stage: Annotated[str, typer.Option(help="after: projector first, then LoRA; joint: together")] = "after",
          lora_targets: Annotated[str, typer.Option(help="LM modules that get adapters, comma-separated")] = "q_proj,v_proj",
          cache_layers: Annotated[int, typer.Option(help="slots + LoRA: frozen projector, LM layers below this run "
                                                         "once per example; only the layers above train")] = 0,
          seed: Annotated[int, typer.Option()] = 0,
          log: LogOpt = None) -> None:
    """Train the prefix projector (LM frozen) on cached aligned embeddings; optional LoRA stage."""
    from crossalign.bridge import BridgeConfig
    from crossalign.recipes.bridge import train_bridge

    cfg = BridgeConfig(lm=lm, projector=projector, prefix_tokens=prefix_tokens,  # type: ignore[arg-type]
                       train_columns=[c.strip() for c in train_on.split(",") if c.strip()],
                       tasks=[t.strip() for t in tasks.split(",") if t.strip()], max_rows=max_rows,
                       free_tokens=free_tokens, slot_epochs=slot_epochs, aux_weight=aux_weight, qa_per_row=qa_per_row,
                       lora_r=lora_r, lora_epochs=lora_epochs, lora_stage=lora_stage, lora_lr=lora_lr, val_rows=val_rows,  # type: ignore[arg-type]
                       lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()], cache_layers=cache_layers,
                       train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed})
    folder, res = train_bridge(run, data, out or run / "bridge", cfg, log=log_specs(log))
    typer.echo(f"bridge saved to {folder} " + json.dumps({k: round(r.best_metric, 4) for k, r in res.items()}))


@app.command("eval")
def evaluate(bridge: Annotated[Path, typer.Argument(help="bridge folder")],
             data: Annotated[Path, typer.Option(help="scenes-style manifest or folder")],
             limit: Annotated[int, typer.Option(help="test rows (0: all)")] = 100,
             questions_per_type: Annotated[int, typer.Option(help="questions per row of each type it allows")] = 1,
             columns: Annotated[Optional[str], typer.Option(help="views to feed it (default: all non-text)")] = None,
             out: Annotated[Optional[Path], typer.Option(help="write the results JSON here")] = None) -> None:
    """Attribute accuracy, QA exact match and BLEU-4 vs the retrieval baseline, per input modality."""
    from crossalign.bridge import evaluate_bridge, format_table

    res = evaluate_bridge(bridge, data, limit=limit, questions_per_type=questions_per_type,
                          columns=[c.strip() for c in columns.split(",")] if columns else None)
    target = out or bridge / "eval.json"
    target.write_text(json.dumps(res, indent=2))
    typer.echo(format_table(res))
    typer.echo(f"\n{res['rows']} test rows, {res['qa_pairs']} questions; written to {target}")


def ask(run_or_bridge: Annotated[Path, typer.Argument(help="bridge folder, or a run folder holding bridge/")],
        image: Annotated[Optional[Path], typer.Option(help="image file")] = None,
        audio: Annotated[Optional[Path], typer.Option(help="audio file")] = None,
        sensor: Annotated[Optional[Path], typer.Option(help="sensor array (.npy)")] = None,
        input: InputOpt = None,
        text: Annotated[Optional[str], typer.Option(help="question (default: describe it)")] = None,
        max_tokens: Annotated[Optional[int], typer.Option(help="most tokens to generate")] = None) -> None:
    """Stream the language model's answer about an image, a sound, a sensor signal (or any registered
    modality but text, `--input MODALITY=FILE`)."""
    from crossalign.bridge import Bridge, find_bridge, ask_modalities

    given = list(gather_inputs({"image": image, "audio": audio, "sensor": sensor}, input, ask_modalities()).items())
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --image, --audio, --sensor, --input M=FILE")
    modality, value = given[0]
    if not value.exists():
        raise typer.BadParameter(f"{value}: no such file")
    b = Bridge.load(find_bridge(run_or_bridge))
    for piece in b.ask(modality, str(value.resolve()), text, max_new_tokens=max_tokens):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="bridge")
    root.command("ask")(ask)
