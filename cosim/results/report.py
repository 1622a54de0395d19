"""``cosim report results.h5``: one self-contained HTML file an engineer can file.

Structured like ASME V&V 40 credibility evidence (``cosim.scenario.credibility``): question of
interest
and context of use; model risk; the computational model (coupling graph, FMUs); verification
and validation evidence per model (what its tests produced, bound to the FMU's SHA-256); the
results of this run (verdict table with each criterion's figure, limit and window; plots with
the criteria drawn; for a cohort, each figure's distribution over the members and the failing
members); provenance. Plots are inline SVG; the file loads nothing from anywhere.
Everything comes from the results file (its provenance holds the scenario's text).
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cosim.errors import CosimError
from cosim.results.plot import signal_figure
from cosim.results.reader import Results, open_results
from cosim.scenario.credibility import EVIDENCE, LEVELS, model_risk, read_evidence
from cosim.scenario.criteria import Outcome

SCALE_ORDER = ("device", "cell", "tissue", "organ", "other")
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pass{color:#176e17;font-weight:bold}.fail{color:#b00;font-weight:bold}
.verdict{font-size:1.3em;padding:.3em .6em;display:inline-block;border-radius:4px}
.verdict.pass{background:#e3f5e3}.verdict.fail{background:#fbe3e3}
code,pre{font-size:.85em}pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
.note{color:#555;font-size:.9em}figure{margin:.5em 0}svg{max-width:100%;height:auto}
"""


def write_report(results: str | Path, output: str | Path | None = None,
                 evidence: Path = EVIDENCE, shown_as: str | None = None) -> Path:
    """Write the HTML report of ``results`` (default: beside it, ``.html``); returns its path.
    ``shown_as``: the results file's name as the report gives it (a run's partial file is
    reported under the name it will have)."""
    results = Path(results)
    output = Path(output) if output else results.with_suffix(".html")
    with open_results(results) as res:
        if "format" not in res.file.attrs:
            raise CosimError(f"{results}: not a cosim results file (no 'format' attribute)")
        text = report_html(res, Path(evidence), shown_as or results.name)
    output.write_text(text, encoding="utf-8")
    return output


def report_html(res: Results, evidence: Path, name: str) -> str:
    attrs = res.attrs
    scenario = _scenario(attrs)
    title = str(attrs.get("scenario_name") or res.path.stem)
    sections = [
        _context(attrs, scenario),
        _risk(scenario),
        _model(attrs, scenario),
        _evidence(attrs, evidence),
        _cohort(res, scenario) if res.members else _run(res, scenario),
        *([_fit(res.file["fit"])] if "fit" in res.file else []),
        _provenance(attrs),
    ]
    body = "\n".join(f"<section>{s}</section>" for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)} — cosim report</title><style>{STYLE}</style></head>"
            f"<body><h1>{_e(title)}</h1>{_headline(res, attrs, name)}\n{body}</body></html>\n")


# -- sections ---------------------------------------------------------------------------------
def _headline(res: Results, attrs: dict, name: str) -> str:
    verdict = res.verdict
    if res.members:
        table = res.summary()
        passed, size = int(np.sum(table["passed"])), len(table["member"])
        word, css = f"{passed} of {size} members passed", "pass" if passed == size else "fail"
    elif verdict is None:
        word, css = "no acceptance criteria", "note"
    else:
        word, css = ("PASS" if verdict["passed"] else "FAIL"), \
            ("pass" if verdict["passed"] else "fail")
    status = str(attrs.get("status", "unknown"))
    note = "" if status == "completed" else \
        f" <span class=\"fail\">run {_e(status)}: {_e(attrs.get('error', ''))}</span>"
    return (f"<p><span class=\"verdict {css}\">{_e(word)}</span>{note}</p>"
            f"<p class=\"note\">{_e(name)} · created {_e(attrs.get('created', '?'))}"
            f" · {_e(attrs.get('end_reason', ''))}</p>")


def _context(attrs: dict, scenario: dict) -> str:
    credibility = scenario.get("credibility") or {}
    question = credibility.get("question") or "not stated in the scenario (credibility.question)"
    context = credibility.get("context_of_use") or (
        "not stated in the scenario (credibility.context_of_use)")
    return (f"<h2>1 Question of interest and context of use</h2>"
            f"<p><b>Question of interest:</b> {_e(question)}</p>"
            f"<p><b>Context of use:</b> {_e(context)}</p>"
            f"<p><b>Scenario:</b> {_e(scenario.get('description', '')).strip()}</p>")


def _risk(scenario: dict) -> str:
    credibility = scenario.get("credibility") or {}
    influence = credibility.get("model_influence")
    consequence = credibility.get("decision_consequence")
    if influence in LEVELS and consequence in LEVELS:
        risk = model_risk(influence, consequence)
        text = (f"<table><tr><th>model influence</th><td>{influence}</td></tr>"
                f"<tr><th>decision consequence</th><td>{consequence}</td></tr>"
                f"<tr><th>model risk</th><td><b>{risk}</b> of 5</td></tr></table>")
    else:
        text = ("<p>Not assessed: give <code>credibility.model_influence</code> and "
                "<code>credibility.decision_consequence</code> (low, medium, high) in the "
                "scenario.</p>")
    return (f"<h2>2 Model risk</h2>{text}<p class=\"note\">Model risk as in ASME V&amp;V 40: "
            "the higher the risk, the more verification and validation evidence the "
            "credibility goals ask for.</p>")


def _model(attrs: dict, scenario: dict) -> str:
    fmus = attrs.get("fmus") or {}
    isolation = attrs.get("isolation") or {}
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(info.get('model_name'))}</td><td>{_e(info.get('file'))}"
        f"</td><td><code>{_e(info.get('sha256'))}</code></td>"
        f"<td>{_e(info.get('generation_tool'))}</td><td>{_e(isolation.get(name, 'none'))}</td>"
        "</tr>" for name, info in fmus.items())
    grid = (f"{_e(attrs.get('algorithm'))}, step {_e(attrs.get('step'))} s, from "
            f"{_e(attrs.get('start'))} to {_e(attrs.get('stop'))} s, recording every "
            f"{_e(attrs.get('record_every'))} step(s)")
    return (f"<h2>3 Computational model</h2><p>Master: {grid}.</p>"
            f"<figure>{_graph_svg(fmus, scenario)}<figcaption class=\"note\">Coupling graph: "
            "instances by scale, each arrow an output feeding an input.</figcaption></figure>"
            "<table><tr><th>instance</th><th>model</th><th>FMU file</th><th>SHA-256</th>"
            f"<th>generation tool</th><th>isolation</th></tr>{rows}</table>")


def _evidence(attrs: dict, folder: Path) -> str:
    fmus = attrs.get("fmus") or {}
    seen, parts = set(), []
    for info in fmus.values():
        sha = info.get("sha256")
        if sha in seen:
            continue
        seen.add(sha)
        found = read_evidence(sha, folder)
        name = _e(info.get("model_name"))
        if found is None:
            parts.append(f"<h3>{name}</h3><p>No recorded test evidence for this FMU "
                         f"(<code>{_e(sha[:16])}…</code>). For a library model, run its tests "
                         "(<code>python -m pytest tests/models</code>) with the same sources; "
                         "for another FMU, its supplier's evidence applies.</p>")
            continue
        tests = found.get("tests", [])
        counts = {}
        for test in tests:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        rows = "".join(
            f"<tr><td class=\"{'pass' if t['outcome'] == 'passed' else 'fail'}\">"
            f"{_e(t['outcome'])}</td><td><code>{_e(t['test'])}</code></td>"
            f"<td>{_e(t.get('doc', ''))}</td></tr>" for t in tests)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        parts.append(
            f"<h3>{name}: {_e(summary)}</h3><p class=\"note\">Tests run on "
            f"{_e(found.get('created'))} from commit <code>{_e(found.get('cosim_commit'))}"
            f"</code> against the sources of this very FMU (SHA-256 match).</p>"
            f"<details><summary>{len(tests)} tests</summary><table><tr><th>outcome</th>"
            f"<th>test</th><th>what it shows</th></tr>{rows}</table></details>")
    return ("<h2>4 Verification and validation evidence</h2><p class=\"note\">What each "
            "model's tests produced (<code>tests/models/test_&lt;model&gt;.py</code>: "
            "verification of the numerics and code, validation against published clinical "
            "and physiological ranges; <code>test_editions.py</code>: the C FMU equal to the "
            "independent Python edition). A test session records them per FMU SHA-256 in "
            "<code>build/evidence/</code>; the report shows them only for the FMU bytes this "
            "run used.</p>" + "".join(parts))


def _run(res: Results, scenario: dict) -> str:
    verdict = res.verdict
    outcomes = _outcomes(verdict)
    signals = list(scenario.get("plot") or []) or list(dict.fromkeys(o.signal
                                                                      for o in outcomes))
    signals = [s for s in signals if s in res]
    figure = _svg(signal_figure(res, signals, outcomes, "")) if signals else ""
    return ("<h2>5 Results of this run</h2>" + _verdict_table(outcomes)
            + (f"<figure>{figure}<figcaption class=\"note\">Shaded: each criterion's window "
               "(green met, red not); dashed red: limits in the signal's units, and where a "
               "criterion broke; event channels as marks, their codes in the legend."
               "</figcaption></figure>" if figure else ""))


def _cohort(res: Results, scenario: dict) -> str:
    table = res.summary()
    criteria = scenario.get("criteria") or []
    parts = [f"<h2>5 Results over the cohort ({len(table['member'])} members)</h2>"]
    if criteria:
        parts.append(f"<figure>{_svg(_distributions(table, criteria))}<figcaption class="
                     "\"note\">Each criterion's figure over the members; dashed red: its "
                     "limits.</figcaption></figure>")
    rows = []
    for i in np.flatnonzero(~table["passed"]):
        member = f"{int(table['member'][i]):06d}"
        with res.member(member) as one:
            failed = [o.name for o in _outcomes(one.verdict) if not o.passed]
            error = str(one.attrs.get("error", ""))
            parameters = one.attrs.get("parameters", {})
        rows.append(f"<tr><td>{member}</td><td>{_e(table['status'][i])}</td>"
                    f"<td>{_e(', '.join(failed))}</td><td>{_e(error)}</td>"
                    f"<td><code>{_e(json.dumps(parameters))}</code></td></tr>")
    parts.append("<h3>Failing members</h3>" + (
        "<table><tr><th>member</th><th>status</th><th>criteria not met</th><th>error</th>"
        f"<th>parameters</th></tr>{''.join(rows)}</table>" if rows else "<p>None.</p>"))
    return "".join(parts)


def _fit(group) -> str:
    """What ``cosim fit`` found (``cosim.twins``): the parameters with their uncertainty, each
    target's residuals, and the simulated against the measured signal where the data may be
    stored (``store: full``; otherwise the simulated one alone)."""
    import matplotlib.pyplot as plt

    found = json.loads(group.attrs["summary"])
    rows = "".join(f"<tr><td><code>{_e(n)}</code></td><td>{p['value']:.6g}</td>"
                   f"<td>{p['sd']:.3g}</td><td>{p['low95']:.6g} … {p['high95']:.6g}</td></tr>"
                   for n, p in found["parameters"].items())
    parts = [f"<h2>5b Fitted to measured data</h2><p>{_e(found['method'])}: "
             f"{_e(found['message'])} {found['members']} model runs in {found['batches']} "
             f"cohorts, {found['seconds']:.1f} s; uncertainty from the Jacobian, "
             f"{'noise as stated' if found['noise_known'] else 'noise from the residuals'}."
             f"</p><table><tr><th>parameter</th><th>value</th><th>sd</th><th>95 %</th></tr>"
             f"{rows}</table>"]
    for key in sorted(group.get("targets", {}), key=int):
        target = group["targets"][key]
        name, rms = target.attrs["name"], float(target.attrs["rms"])
        parts.append(f"<h3>{_e(name)}</h3><p>rms residual {rms:.3g} σ</p>")
        if "simulated" in target:
            fig, ax = plt.subplots(figsize=(8, 2.6))
            ax.plot(target["time"][()], target["simulated"][()], label="simulated")
            if "measured" in target:
                ax.plot(target["time"][()], target["measured"][()], ".", ms=3, label="measured")
            else:
                parts.append("<p class=\"note\">Measured values not stored (the data's store "
                             "is hash or none): the simulated signal alone.</p>")
            ax.set_xlabel("time [s]")
            ax.set_ylabel(str(target.attrs["signal"]))
            ax.legend(loc="upper right")
            fig.tight_layout()
            parts.append(f"<figure>{_svg(fig)}</figure>")
        else:
            parts.append(f"<p>figure {_e(target.attrs['measure'])}: simulated "
                         f"{float(target.attrs['figure']):.4g}, measured "
                         f"{float(target.attrs['value']):.4g}</p>")
    return "".join(parts)


def _provenance(attrs: dict) -> str:
    keys = ("created", "status", "cosim_version", "cosim_commit", "cosim_modified", "host",
            "command_line", "scenario_file", "scenario_sha256", "cohort_table", "mpi_ranks",
            "run_seconds", "format_version", "patient", "measured_data")
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(_text(attrs[k]))}</code></td></tr>"
                   for k in keys if k in attrs)
    versions = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                       for k, v in (attrs.get("versions") or {}).items())
    return (f"<h2>6 Provenance</h2><table>{rows}</table><h3>Software</h3><table>{versions}"
            f"</table><details><summary>Scenario file as run</summary><pre>"
            f"{_e(attrs.get('scenario_text', ''))}</pre></details>")


# -- pieces -----------------------------------------------------------------------------------
def _verdict_table(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "<p>No acceptance criteria.</p>"
    rows = []
    for o in outcomes:
        limit = " and ".join(p for p in (f"≥ {o.min:g}" if not math.isnan(o.min) else "",
                                         f"≤ {o.max:g}" if not math.isnan(o.max) else "") if p)
        broke = "" if math.isnan(o.broke_at) else f"{o.broke_at:g} s"
        rows.append(f"<tr><td class=\"{'pass' if o.passed else 'fail'}\">"
                    f"{'PASS' if o.passed else 'FAIL'}</td><td>{_e(o.name)}</td>"
                    f"<td><code>{_e(o.measure)}({_e(o.signal)})</code></td><td>{o.value:.4g}"
                    f"</td><td>{_e(limit)}</td><td>{o.window_start:g}–{o.window_stop:g} s</td>"
                    f"<td>{_e(broke)}</td></tr>")
    return ("<table><tr><th></th><th>criterion</th><th>measure</th><th>figure</th>"
            "<th>limit</th><th>window</th><th>broke at</th></tr>" + "".join(rows) + "</table>")


def _outcomes(verdict: dict | None) -> list[Outcome]:
    if verdict is None:
        return []
    fields = Outcome.__dataclass_fields__
    return [Outcome(**{k: v for k, v in c.items() if k in fields}) for c in verdict["criteria"]]


def _distributions(table: dict[str, np.ndarray], criteria: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(criteria), squeeze=False,
                             figsize=(min(3.2 * len(criteria), 11), 2.6))
    for ax, criterion in zip(axes[0], criteria, strict=True):
        name = criterion["name"]
        values = np.asarray(table.get(name, []), dtype=float)
        finite = values[np.isfinite(values)]
        ax.hist(finite, bins=min(20, max(5, len(finite) // 2)), color="tab:blue", alpha=0.7)
        for key in ("min", "max"):
            if key in criterion:
                ax.axvline(float(criterion[key]), color="tab:red", ls="--", lw=1)
        met = int(np.sum(np.isfinite(values))) if len(values) else 0
        ax.set_title(f"{name}\n({met} figures)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def _graph_svg(fmus: dict, scenario: dict) -> str:
    """The coupling graph drawn with networkx and matplotlib (no graphviz)."""
    import matplotlib.pyplot as plt
    import networkx as nx

    instances = scenario.get("instances") or {}
    graph = nx.DiGraph()
    for name in fmus:
        spec = instances.get(name)
        scale = spec.get("scale", "other") if isinstance(spec, dict) else "other"
        graph.add_node(name, layer=SCALE_ORDER.index(scale) if scale in SCALE_ORDER else 4)
    labels: dict[tuple[str, str], list[str]] = {}
    for line in scenario.get("connections") or []:
        source, _, target = str(line).partition("->")
        (a, _, out), (b, _, inp) = source.strip().partition("."), target.strip().partition(".")
        if a in graph and b in graph:
            graph.add_edge(a, b)
            labels.setdefault((a, b), []).append(f"{out}→{inp}")
    if not graph:
        return ""
    position = nx.multipartite_layout(graph, subset_key="layer", align="vertical")
    fig, ax = plt.subplots(figsize=(10, 1.2 + 1.3 * max(
        sum(1 for _ in group) for group in _layers(graph))))
    nx.draw_networkx_nodes(graph, position, ax=ax, node_size=2600, node_color="#dde8f5",
                           edgecolors="#4a6d94")
    nx.draw_networkx_labels(graph, position, ax=ax, font_size=8, labels={
        n: f"{n}\n{(fmus.get(n) or {}).get('model_name', '')}" for n in graph})
    nx.draw_networkx_edges(graph, position, ax=ax, node_size=2600, arrowsize=12,
                           connectionstyle="arc3,rad=0.12", edge_color="#666")
    nx.draw_networkx_edge_labels(graph, position, ax=ax, font_size=6, label_pos=0.5,
                                 connectionstyle="arc3,rad=0.12",
                                 edge_labels={k: "\n".join(v) for k, v in labels.items()})
    ax.set_axis_off()
    ax.margins(0.12)
    fig.tight_layout()
    return _svg(fig)


def _layers(graph) -> list[list[str]]:
    layers: dict[int, list[str]] = {}
    for node, data in graph.nodes(data=True):
        layers.setdefault(data["layer"], []).append(node)
    return list(layers.values())


def _svg(fig) -> str:
    """A figure as inline SVG text (fonts as text, no external references)."""
    import matplotlib
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cosim"}):
        fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _scenario(attrs: dict) -> dict[str, Any]:
    try:
        data = yaml.safe_load(str(attrs.get("scenario_text", ""))) or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str) else json.dumps(value)


def _e(value: Any) -> str:
    return html.escape(str(value) if value is not None else "")
