"""`crossalign federate`: align across sites with Flower; only head weights leave a site."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def federate_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML: model:, train: (as for train) and federation:")] = None,
    data: Annotated[Path | None, Opt(help="manifest or its folder (overrides the config)")] = None,
    modalities: Annotated[str | None, Opt(help="comma-separated view columns, e.g. image,text,audio,sensor")] = None,
    out: Annotated[Path | None, Opt(help="run folder (gets federation.json and rounds.png too)")] = None,
    sites: Annotated[int | None, Opt(help="number of sites")] = None,
    partition: Annotated[str | None, Opt(help="iid | dirichlet:ALPHA | column:NAME")] = None,
    partition_key: Annotated[str | None, Opt(help="what dirichlet is non-IID over: label or group")] = None,
    site_modalities: Annotated[str | None, Opt(help="views per site, e.g. '0=image,text;1=text,audio'")] = None,
    start: Annotated[str | None, Opt(help="closed_form (pooled multi-view CCA from the sites' statistics, "
                                       "then rounds; default) | scratch | auto (both, the better on the sites' val)")] = None,
    hybrid: Annotated[bool | None, Opt("--hybrid/--no-hybrid", help="closed_form with from-scratch towers: fit "
                                       "the other views and train only those towers into that fixed space "
                                       "(default) | fit every view and fine-tune everything")] = None,
    hybrid_rounds: Annotated[int | None, Opt(help="hybrid: first rounds that hold the closed-form views still "
                                             "(default 60 %% of --rounds); later rounds fine-tune every view")] = None,
    route: Annotated[bool | None, Opt("--route/--no-route", help="closed_form: after the rounds, serve each pair "
                                      "of the closed-form views by the joint model, its own CCA or a mixture, "
                                      "whichever the sites' val rows prefer | keep the joint model (default; "
                                      "routing was neutral on scenes)")] = None,
    per_pair: Annotated[bool | None, Opt("--per-pair/--no-per-pair", help="start auto: serve each pair of views by "
                                         "the federation the sites' val rows prefer (default) | the better "
                                         "federation serves every pair")] = None,
    average_last: Annotated[int | None, Opt(help="also score the mean of the last N rounds' models on the sites' "
                                            "val rows; kept when it beats the best round (0 or 1: off)")] = None,
    strategy: Annotated[str | None, Opt(help="fedavg | fedavgm | fedprox | fedadam | fedyogi")] = None,
    proximal_mu: Annotated[float | None, Opt(help="FedProx proximal weight mu")] = None,
    server_lr: Annotated[float | None, Opt(help="server learning rate (FedAdam/FedYogi: default 0.1; FedAvgM: 1.0)")] = None,
    server_momentum: Annotated[float | None, Opt(help="FedAvgM server momentum (default 0.9)")] = None,
    rounds: Annotated[int | None, Opt(help="federated rounds")] = None,
    local_epochs: Annotated[int | None, Opt(help="epochs each site trains per round")] = None,
    fraction_fit: Annotated[float | None, Opt(help="share of sites sampled per round")] = None,
    min_sites: Annotated[int | None, Opt(help="a round fails below this many answering sites (0: all sampled)")] = None,
    dp_clip: Annotated[float | None, Opt(help="client-level DP: L2 clip of each site's update")] = None,
    dp_noise: Annotated[float | None, Opt(help="client-level DP: Gaussian noise multiplier")] = None,
    site_cache: Annotated[str | None, Opt(help="each site's feature cache, e.g. '{cache}/sites/site-{site}'")] = None,
    seed: Annotated[int | None, Opt(help="random seed")] = None,
    evaluate: Annotated[bool, Opt(help="evaluate the result on the test split (needs the pooled manifest)")] = False,
    processes: Annotated[bool, Opt("--processes", help="real separate processes on this machine: flower-superlink, "
                                   "one flower-supernode per site, flwr run (logs in OUT/flower-logs)")] = False,
    verbose: Annotated[bool, Opt("--verbose", help="show Flower's and Ray's own logs")] = False,
) -> None:
    """Federated alignment on Flower: simulation engine by default (one SuperNode per site), or
    --processes for a real SuperLink and SuperNodes (several machines: docs/federated.md).

    Exit status 1 when a round fails (fewer sites answered than --min-sites); per-round failures are
    in OUT/federation.json either way.
    """
    from crossalign.cli.common import config_from_args
    from crossalign.federate.config import FederationConfig, load_federation_config, parse_site_modalities
    from crossalign.federate.runner import run_federation

    logging.getLogger("crossalign.federate").setLevel(logging.INFO)
    try:
        if config is not None:
            fed = load_federation_config(config)
            run = fed.run
            if data is not None:
                run.train.data = str(data)
            if not run.train.data:
                raise ValueError(f"{config}: no data (set train.data or pass --data)")
        else:
            run = config_from_args(None, data, modalities, out, seed=seed)
            fed = FederationConfig(run=run)
        if out is not None:
            run.train.out = str(out)
        if seed is not None:
            run.train.seed = seed
        upd = {"sites": sites, "start": start, "hybrid": hybrid, "hybrid_rounds": hybrid_rounds, "route": route, "per_pair": per_pair, "average_last": average_last, "partition": partition, "partition_key": partition_key, "strategy": strategy,
               "proximal_mu": proximal_mu, "server_lr": server_lr,
               "server_momentum": server_momentum, "rounds": rounds, "local_epochs": local_epochs,
               "fraction_fit": fraction_fit, "min_sites": min_sites, "dp_clip": dp_clip, "dp_noise": dp_noise,
               "site_cache": site_cache,
               "site_modalities": parse_site_modalities(site_modalities) if site_modalities else None}
        d = fed.to_dict() | {k: v for k, v in upd.items() if v is not None}
        fed = FederationConfig.from_dict(d | {"run": run})
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from None
    if processes:
        from crossalign.federate.deploy import run_deployed

        rec = run_deployed(fed, Path(run.train.out), timeout=fed.timeout)
    else:
        rec = run_federation(fed, Path(run.train.out), verbose=verbose)
    typer.echo(f"federation {rec.status}: {sum(r.get('status') == 'ok' for r in rec.rounds)}/{fed.rounds} rounds, "
               f"{rec.failures} site failure(s); {Path(run.train.out) / 'federation.json'}")
    for r in rec.rounds:
        typer.echo(f"  round {r['round']:3d}  val R@1 {r['val_R@1'] if r['val_R@1'] is not None else float('nan'):.4f}"
                   f"  loss {r['train_loss'] if r['train_loss'] is not None else float('nan'):.4f}"
                   f"  failures {r['train_failures'] + r['eval_failures']}  {r['seconds']:.1f} s"
                   f"  sent {r['bytes_sent'] / 2**20:.2f} MB  received {r['bytes_received'] / 2**20:.2f} MB")
    if (rec.routing or {}).get("error"):
        typer.echo(f"  per-pair routing skipped (the joint model is kept): {rec.routing['error']}")  # type: ignore[index]
    for key, r in ((rec.routing or {}).get("routes") or {}).items():
        typer.echo(f"  route {key}: {r['chosen']}  (sites' val: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in r["val"].items()) + ")")
    if rec.winner:  # start auto: the federation kept, and per pair the one serving it
        typer.echo(f"  start auto: {rec.winner} kept (sites' best val: "
                   + ", ".join(f"{k} {c['best_val_R@1']:.4f}" for k, c in (rec.candidates or {}).items()) + ")")
    if (rec.per_pair or {}).get("error"):
        typer.echo(f"  per-pair choice skipped ({rec.winner} serves every pair): {rec.per_pair['error']}")  # type: ignore[index]
    for key, r in ((rec.per_pair or {}).get("routes") or {}).items():
        typer.echo(f"  pair {key}: {r['chosen']} federation  (sites' val: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in r["val"].items()) + ")")
    if rec.privacy:
        p = rec.privacy
        typer.echo(f"privacy: client-level ({p['epsilon']:.2f}, {p['delta']:g})-DP over {p['releases']} rounds "
                   f"(noise z={p['noise_multiplier']}, clip {p['clipping_norm']}); not covered: {'; '.join(p['not_covered'])}")
    if rec.status != "completed" or any(r.get("status") != "ok" for r in rec.rounds) or len(rec.rounds) < fed.rounds:
        typer.echo(f"error: {rec.error or 'a round did not complete'}", err=True)
        raise typer.Exit(1)
    if evaluate:
        from crossalign.evaluate.report import print_tables, retrieval_table
        from crossalign.evaluate.run_eval import evaluate_run

        m = evaluate_run(run.train.out, split="test").metrics
        print_tables(retrieval_table(m, run.model.columns, title="test R@1 (federated model)"))


def register(app: typer.Typer) -> None:
    app.command("federate")(federate_cmd)
