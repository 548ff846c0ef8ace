# ruff: noqa: E501 - the page template: HTML lines, not code
"""The report page (jinja2): inline CSS, images as data URIs, no script, no external resource."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crossalign report: {{ reps | map(attribute='name') | join(', ') }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #d9dee4;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6670;font-size:13px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dfe3e8;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.l,th.l{text-align:left}
td.best{font-weight:700;background:#e8f5e9}.ci{color:#6b7780;font-size:11px}
.card{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:4px 18px}
.card table{width:100%}.card td{white-space:normal;text-align:left}
figure{margin:8px 0;background:#fff;border:1px solid #dfe3e8;padding:6px;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:12px;color:#5b6670}
.fail{background:#fff;border:1px solid #dfe3e8;padding:8px 10px;margin:8px 0}
details pre{background:#fff;border:1px solid #dfe3e8;padding:8px;max-height:320px;overflow:auto;font-size:12px}
.note{color:#5b6670;font-size:12px;margin:2px 0 8px}
</style></head><body><main>
<h1>crossalign report</h1>
<div class="sub">{{ reps | length }} run{{ '' if reps|length == 1 else 's' }} · generated {{ generated }} · crossalign {{ reps[0].card.version }} ({{ reps[0].card.git }})</div>
{% if reps | length > 1 %}
<h2 id="compare">Runs side by side (test R@1, bootstrap 95 % interval)</h2>
<table id="compare-table"><tr><th class="l">direction</th>{% for r in reps %}<th>{{ r.name }}</th>{% endfor %}</tr>
{% for d in all_directions %}<tr><td class="l">{{ d }}</td>{% for r in reps %}{% set x = r.results.crossalign.get(d) %}
<td data-run="{{ loop.index0 }}" data-method="crossalign" data-key="{{ d }}/R@1">{% if x %}{{ '%.3f' % x['R@1'] }} <span class="ci">[{{ '%.3f' % x.ci['R@1'][0] }}, {{ '%.3f' % x.ci['R@1'][1] }}]</span>{% else %}—{% endif %}</td>{% endfor %}</tr>{% endfor %}
<tr><th class="l">mean</th>{% for r in reps %}<th>{{ '%.3f' % r.mean_r1 }}</th>{% endfor %}</tr></table>
{% endif %}
{% for r in reps %}{% set ri = loop.index0 %}
<h2 id="run-{{ ri }}">Run {{ r.name }}</h2>
<h3>Run card</h3>
<div class="card">
<table><tr><td>folder</td><td>{{ r.card.run }}</td></tr>
<tr><td>data</td><td>{{ r.card.data }}</td></tr>
<tr><td>rows</td><td>{% for s, n in r.card.counts.items() %}{{ s }} {{ n }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>
<tr><td>seed</td><td>{{ r.card.seed }}</td></tr>
<tr><td>crossalign</td><td>{{ r.card.version }}, git {{ r.card.git }}</td></tr>
<tr><td>best epoch</td><td>{{ r.card.train_result.get('best_epoch', '—') }} of {{ r.card.train_result.get('epochs_run', '—') }}</td></tr>
<tr><td>views</td><td>{% for c, e in r.card.encoders.items() %}{{ c }}: {{ e.name }} ({{ e.version }}){{ '; ' if not loop.last }}{% endfor %}</td></tr></table>
<table><tr><td>hardware</td><td>{{ r.card.hardware.cpu }}, {{ r.card.hardware.cores }} cores, {{ r.card.hardware.memory_gb }} GB, GPU {{ r.card.hardware.gpu }}</td></tr>
<tr><td>libraries</td><td>{% for k, v in r.card.libraries.items() %}{{ k }} {{ v }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>
<tr><td>time per phase</td><td>{% for k, v in r.card.phases.items() %}{{ k }} {{ '%.1f' % v.seconds }} s{% if v.peak_rss_mb is defined %} (peak RSS {{ v.peak_rss_mb }} MB){% endif %}{{ '; ' if not loop.last }}{% endfor %}</td></tr></table>
</div>
<details><summary>configuration</summary><pre>{{ r.config_json }}</pre></details>

<h3>Retrieval per direction ({{ r.split }} split, {{ r.n_test }} queries; 95 % bootstrap intervals over queries, {{ r.n_boot }} resamples)</h3>
<table class="results" id="results-{{ ri }}"><tr><th class="l">direction</th><th>R@1</th><th>R@5</th><th>R@10</th><th>median rank</th><th>MRR</th></tr>
{% for d in r.directions %}{% set x = r.results.crossalign[d] %}<tr><td class="l">{{ d }}</td>
{% for k in ('R@1', 'R@5', 'R@10', 'MdR', 'MRR') %}<td data-run="{{ ri }}" data-method="crossalign" data-key="{{ d }}/{{ k }}">{{ ('%.0f' if k == 'MdR' else '%.3f') % x[k] }} <span class="ci">[{{ ('%.0f' if k == 'MdR' else '%.3f') % x.ci[k][0] }}, {{ ('%.0f' if k == 'MdR' else '%.3f') % x.ci[k][1] }}]</span></td>{% endfor %}</tr>
{% endfor %}</table>
<h3>R@1 beside every baseline (same features, same split)</h3>
<table class="baselines" id="baselines-{{ ri }}"><tr><th class="l">direction</th>{% for meth in r.results %}<th>{{ meth }}</th>{% endfor %}</tr>
{% for d in r.directions %}{% set best = r.best[d] %}<tr><td class="l">{{ d }}</td>{% for meth, res in r.results.items() %}
{% if d in res %}<td class="{{ 'best' if meth == best }}" data-run="{{ ri }}" data-method="{{ meth }}" data-key="{{ d }}/R@1">{{ '%.3f' % res[d]['R@1'] }} <span class="ci">[{{ '%.3f' % res[d].ci['R@1'][0] }}, {{ '%.3f' % res[d].ci['R@1'][1] }}]</span></td>{% else %}<td>—</td>{% endif %}{% endfor %}</tr>
{% endfor %}</table>
{% if r.view_rows %}<h3>Zero-shot, hard negatives, probes (per view)</h3>
<table><tr><th class="l">view</th>{% for k, n in r.view_keys %}<th>{{ n }}</th>{% endfor %}</tr>
{% for v, vals in r.view_rows %}<tr><td class="l">{{ v }}</td>{% for x in vals %}<td>{{ x }}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="note">Zero-shot: the view's embedding against one text prompt per label ("a {label}"). Hard negatives: the true caption scored above the caption with one attribute swapped.</p>{% endif %}
{% if r.gaps %}<h3>Modality gap and alignment</h3>
<table><tr><th class="l">pair</th><th>gap (centroid distance)</th><th>alignment (mean squared distance of pairs)</th></tr>
{% for p, g, a in r.gaps %}<tr><td class="l">{{ p }}</td><td>{{ '%.3f' % g }}</td><td>{{ '%.3f' % a }}</td></tr>{% endfor %}</table>{% endif %}
<h3>Pictures</h3>
{% for key, cap in (('curves', 'training loss and validation R@1 per epoch'), ('similarity', 'cosine similarity of the first test pairs'), ('gallery', 'text -> image search; green frame: the true pair'), ('ranks', 'rank of the true match per query and direction')) %}
{% if r.figures.get(key) %}<figure><img alt="{{ cap }}" src="{{ r.figures[key] }}"><figcaption>{{ cap }}</figcaption></figure>{% endif %}{% endfor %}
<h3>Worst failures per direction</h3>
{% if not r.failures %}<p class="note">No failures: every query ranked its true match first.</p>{% endif %}
{% for f in r.failures %}<div class="fail"><b>{{ f.direction }}</b>: query <code>{{ f.query }}</code> ranked its true match {{ f.rank }} (score {{ '%.3f' % f.true_score }});
the top hit was <code>{{ f.wrong }}</code> (score {{ '%.3f' % f.wrong_score }}).<br><span class="note">query: {{ f.query_text }} · wrong hit: {{ f.wrong_text }}</span>
{% if f.get('explanation') %}<br>{% for s in f.explanation.sides %}<span class="note">{{ s.column }} — {{ s.method }} ({{ s.why }}){% if s.completeness_gap is not none %}, completeness gap {{ '%.1e' % s.completeness_gap }}{% endif %}; top {{ s.unit }}s: {% for u in s.top %}{{ u[0] }} {{ '%+.3f' % u[1] }}{{ ', ' if not loop.last }}{% endfor %}</span><br>{% endfor %}
<figure><img alt="explanation of {{ f.direction }} failure" src="{{ f.png }}"><figcaption>why the wrong hit scored high (green: raises the similarity, red: lowers it)</figcaption></figure>{% endif %}</div>{% endfor %}
{% if r.extras.get('federation') %}<h3>Federated rounds</h3>
<table><tr><th>round</th><th>val R@1</th><th>train loss</th><th>failures</th><th>bytes sent</th><th>seconds</th></tr>
{% for x in r.extras.federation.rounds %}<tr><td>{{ x['round'] }}</td><td>{{ x['val_R@1'] if x['val_R@1'] is not none else '—' }}</td><td>{{ x.train_loss if x.train_loss is not none else '—' }}</td><td>{{ (x.train_failures or 0) + (x.eval_failures or 0) }}</td><td>{{ x.bytes_sent }}</td><td>{{ x.seconds }}</td></tr>{% endfor %}</table>
{% if r.extras.federation.plot %}<figure><img alt="federated rounds" src="{{ r.extras.federation.plot }}"><figcaption>validation R@1 per round</figcaption></figure>{% endif %}{% endif %}
{% if r.extras.get('fusion') %}<h3>Fusion tasks</h3>{% for t in r.extras.fusion %}<p>{{ t.folder }} ({{ t.task }})</p>
<table>{% for k, v in t.metrics.items() %}<tr><td class="l">{{ k }}</td><td>{{ '%.4f' % v }}</td></tr>{% endfor %}</table>{% endfor %}{% endif %}
{% if r.extras.get('bridge') %}<h3>Language-model bridge</h3><table>{% for k, v in r.extras.bridge.items() %}<tr><td class="l">{{ k }}</td><td>{{ '%.4f' % v }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.absent %}<p class="note">Not in this run: {{ r.absent | join(', ') }}.</p>{% endif %}
{% endfor %}
</main></body></html>
"""
