"""The Flower `ClientApp` of a site: statistics (query), local training (train), validation (evaluate).

The global arrays a site receives hold the trainable weights and the pooled standardisation
buffers; it sends back only the weights of the views it holds.

Replies carry one `ArrayRecord` (head weights, or in a query per-feature statistics or the
closed-form start's sufficient statistics, see federate/closed_form.py) and one
`MetricRecord` of scalars; nothing else leaves the site. The site index comes from the node's
config (`partition-id`, set by the simulation engine or `flower-supernode --node-config`); a real
site may also name its own manifest (`data=...`) and feature cache (`cache=...`) there.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from crossalign.federate.params import from_record, to_record_np
from crossalign.federate.site import Site, get_site

__all__ = ["client_app", "site_of"]

client_app = ClientApp()


def site_of(msg: Message, context: Context) -> Site:
    cfg = msg.content["config"]
    nc = context.node_config
    data = str(nc["data"]) if "data" in nc else None
    cache = str(nc["cache"]) if "cache" in nc else None
    return get_site(str(cfg["federation"]), int(nc.get("partition-id", 0)), data, cache)


def _reply(msg: Message, arrays: ArrayRecord, metrics: dict[str, float]) -> Message:
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)}), reply_to=msg)


@client_app.query()
def stats(msg: Message, context: Context) -> Message:
    """The standardisation statistics, one stage of the closed-form start (with a `stage`), the
    per-pair routing scores (`stage` = route) or one federation's per-pair scores (`stage` = pairs)."""
    site = site_of(msg, context)
    stage = str(msg.content["config"].get("stage", ""))
    if not stage:
        return _reply(msg, to_record_np(site.feature_stats()), {"site": float(site.site)})
    if stage == "route":  # per-pair routing after the rounds: scalars only
        return _reply(msg, ArrayRecord(), {**site.route_stage(from_record(msg.content["arrays"])), "site": float(site.site)})
    if stage == "pairs":  # start auto: each pair under one federation's model, scalars only
        return _reply(msg, ArrayRecord(), {**site.pair_stage(from_record(msg.content["arrays"])), "site": float(site.site)})
    views = str(msg.content["config"].get("views", ""))
    arrays, metrics = site.closed_form_stage(stage, from_record(msg.content["arrays"]),
                                             views.split(",") if views else None)
    return _reply(msg, to_record_np(arrays), {**metrics, "site": float(site.site)})


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    site = site_of(msg, context)
    cfg = msg.content["config"]
    arrays, metrics = site.train(from_record(msg.content["arrays"]), int(cfg["server-round"]),
                                 mu=float(cfg.get("proximal-mu", 0.0)),
                                 frozen=[c for c in str(cfg.get("frozen-views", "")).split(",") if c])
    return _reply(msg, to_record_np(arrays), {**metrics, "site": float(site.site)})


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    site = site_of(msg, context)
    metrics = {**site.evaluate(from_record(msg.content["arrays"])), "site": float(site.site)}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
