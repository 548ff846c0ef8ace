"""`crossalign bridge train|eval` and `crossalign ask`: thin wrappers over `crossalign.bridge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import LogOpt, csv_list, log_specs
from crossalign.cli.inputs import InputOpt, gather_inputs

app = typer.Typer(no_args_is_help=True, help="Language-model bridge: shared-space embedding -> prefix -> LM.")


IntOpt = Optional[int]
FloatOpt = Optional[float]
StrOpt = Optional[str]


@app.command("train")
def train(run: Annotated[Path, typer.Argument(help="crossalign run folder (its shared space feeds the LM)")],
          data: Annotated[Path, typer.Option(help="scenes-style manifest or folder (captions + objects)")],
          out: Annotated[Optional[Path], typer.Option(help="bridge folder (default RUN/bridge)")] = None,
          lm: Annotated[StrOpt, typer.Option(help="'smollm2' (packaged) or hf:<id or folder>")] = None,
          train_on: Annotated[StrOpt, typer.Option(help="view columns whose embeddings train the LM steps, "
                                                        "comma-separated [image]")] = None,
          heads_on: Annotated[StrOpt, typer.Option(help="slots: views the attribute heads pre-train on, comma-separated "
                                                        "[every view of the run]")] = None,
          projector: Annotated[StrOpt, typer.Option(help="linear, mlp or slots (scenes: per-object attribute words)")] = None,
          prefix_tokens: Annotated[IntOpt, typer.Option(help="k prefix vectors (linear, mlp)")] = None,
          free_tokens: Annotated[IntOpt, typer.Option(help="slots: learned vectors after the object words")] = None,
          slot_epochs: Annotated[IntOpt, typer.Option(help="slots: attribute pre-training epochs (no LM, seconds)")] = None,
          aux_weight: Annotated[FloatOpt, typer.Option(help="slots: attribute loss weight beside the LM loss")] = None,
          qa_per_row: Annotated[IntOpt, typer.Option(help="question-answer examples per training row")] = None,
          max_rows: Annotated[IntOpt, typer.Option(help="training rows (0: all); CPU time grows with it")] = None,
          epochs: Annotated[IntOpt, typer.Option()] = None,
          batch_size: Annotated[IntOpt, typer.Option()] = None,
          lr: Annotated[FloatOpt, typer.Option()] = None,
          tasks: Annotated[StrOpt, typer.Option(help="caption,qa")] = None,
          lora_r: Annotated[IntOpt, typer.Option(help="> 0: LoRA adapters of this rank")] = None,
          lora_epochs: Annotated[IntOpt, typer.Option(help="epochs of the LoRA stage")] = None,
          lora_lr: Annotated[FloatOpt, typer.Option(help="learning rate of the LoRA adapters")] = None,
          val_rows: Annotated[IntOpt, typer.Option(help="validation rows for the per-epoch LM loss (CPU time)")] = None,
          lora_stage: Annotated[StrOpt, typer.Option(help="after: projector first, then LoRA; joint: together")] = None,
          lora_targets: Annotated[StrOpt, typer.Option(help="LM modules that get adapters, comma-separated")] = None,
          cache_layers: Annotated[IntOpt, typer.Option(help="slots + LoRA: frozen projector, LM layers below this run "
                                                            "once per example; only the layers above train")] = None,
          seed: Annotated[IntOpt, typer.Option()] = None,
          log: LogOpt = None) -> None:
    """Train the prefix projector (LM frozen) on cached aligned embeddings; optional LoRA stage.

    Settings left out take the recipe measured for the data: on scenes-style rows (captions +
    `objects`) the slots projector with cached LM layers and LoRA (about 5 min on 2 cores), else an
    MLP prefix trained on captions. The chosen recipe and settings are printed and saved in bridge.json."""
    from crossalign.index.identity import run_identity
    from crossalign.recipes.bridge import bridge_config_for, train_bridge

    run_identity(run)  # a wrong run folder is named before the manifest is read for the recipe
    given = {"lm": lm, "projector": projector, "prefix_tokens": prefix_tokens, "train_columns": csv_list(train_on),
             "head_columns": csv_list(heads_on), "tasks": csv_list(tasks), "max_rows": max_rows, "free_tokens": free_tokens,
             "slot_epochs": slot_epochs, "aux_weight": aux_weight, "qa_per_row": qa_per_row, "lora_r": lora_r,
             "lora_epochs": lora_epochs, "lora_stage": lora_stage, "lora_lr": lora_lr, "val_rows": val_rows,
             "lora_targets": csv_list(lora_targets), "cache_layers": cache_layers}
    loop = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    given = {k: v for k, v in given.items() if v is not None} | {"train": {k: v for k, v in loop.items() if v is not None}}
    cfg, recipe = bridge_config_for(data, given)
    typer.echo(f"bridge recipe: {recipe} (projector {cfg.projector}, {cfg.train.epochs} epochs, max_rows {cfg.max_rows}"
               f"{f', LoRA r {cfg.lora_r}' if cfg.lora_r else ''}{f', cache_layers {cfg.cache_layers}' if cfg.cache_layers else ''})")
    folder, res = train_bridge(run, data, out or run / "bridge", cfg, log=log_specs(log))
    typer.echo(f"bridge saved to {folder} " + json.dumps({k: round(r.best_metric, 4) for k, r in res.items()}))


@app.command("eval")
def evaluate(bridge: Annotated[Path, typer.Argument(help="bridge folder")],
             data: Annotated[Path, typer.Option(help="scenes-style manifest or folder")],
             limit: Annotated[int, typer.Option(help="test rows (0: all; every figure then has its interval "
                                                      "over all test rows)")] = 0,
             questions_per_type: Annotated[int, typer.Option(help="questions per row of each type it allows")] = 2,
             columns: Annotated[Optional[str], typer.Option(help="views to feed it (default: all non-text)")] = None,
             out: Annotated[Optional[Path], typer.Option(help="write the results JSON here")] = None) -> None:
    """Attribute accuracy, QA exact match and BLEU-4 vs the retrieval baseline, per input modality."""
    from crossalign.bridge import evaluate_bridge, format_table

    res = evaluate_bridge(bridge, data, limit=limit, questions_per_type=questions_per_type,
                          columns=csv_list(columns))
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
