"""What a batch shows a person: the index page over its runs (a table, comparison figures) and each executed
notebook as a self-contained offline HTML page (progress bars as their last frame); stripping outputs from
notebooks before they go into git.

CLI: `python -m ropd_kit.batch.report strip notebooks/*.ipynb` (clear outputs, keep the `parameters` tag) and
`python -m ropd_kit.batch.report check notebooks/*.ipynb` (exit 1 if any notebook has outputs).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any

from .spec import BatchSpec, INDEX, RunSpec
from typing import Iterable
from ..rundir import RUN_SUBDIR
from .status import _now, read_status


# ---------------------------------------------------------------------------------------------------------------
# The index page


def _cell(value: Any) -> str:
    # Strings as they are (a method name, not '"ropd"'); numbers, lists and None as JSON.
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _varying(runs: list[RunSpec]) -> list[str]:
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({json.dumps(r.params.get(k), default=str) for r in runs}) > 1]


def write_index(batch_dir: str | Path, spec: BatchSpec, runs: list[RunSpec] | None = None) -> Path:
    """`<batch_dir>/index.html`: every run's status, the parameters that differ, links to the notebook reports, and
    comparison figures (training curves, efficiency, signal AUC) from the runs' logs. Works offline (plotly inlined)."""
    from ..notebook_tools.runs import comparison_sections, run_judge_usd

    batch_dir = Path(batch_dir)
    runs = runs if runs is not None else spec.expand()
    varying = _varying(runs)
    statuses = {r.name: read_status(batch_dir / r.name) for r in runs}
    usd = {r.name: run_judge_usd(batch_dir / r.name / RUN_SUBDIR) for r in runs}
    priced = any(v is not None for v in usd.values())  # no dollar column for a batch that prices nothing
    head = ["run", "status", *varying, "wall (s)", *(["judge $"] if priced else []), "notebooks", "error"]
    rows = []
    for run in runs:
        st = statuses[run.name]
        state = st.status if st else "pending"
        links = " · ".join(
            f'<a href="{html.escape(run.name)}/{html.escape(nb.html)}" class="{nb.status}">{html.escape(nb.notebook[:2])}</a>'
            for nb in (st.notebooks if st else []) if nb.html
        )
        error = ""
        if st and st.error:
            error = f"<b>{html.escape(st.failed_notebook or '')}</b>: {html.escape(st.error[:400])}"
        cells = [html.escape(run.name), f'<span class="{state}">{state}</span>',
                 *(html.escape(_cell(run.params.get(k))) for k in varying),
                 "" if not st or st.wall_s is None else f"{st.wall_s:.0f}",
                 *([("—" if usd[run.name] is None else f"{usd[run.name]:.4f}")] if priced else []), links, error]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )
    done_dirs = [batch_dir / name / RUN_SUBDIR for name, st in statuses.items()
                 if st is not None and (batch_dir / name / RUN_SUBDIR).exists()]
    sections, needs_plotly = comparison_sections(done_dirs, target=spec.target_accuracy)
    counts = {s: sum(1 for st in statuses.values() if (st.status if st else "pending") == s)
              for s in ("done", "failed", "running", "pending")}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    page = _PAGE.format(
        title=html.escape(f"ropd-kit batch: {spec.name}"),
        plotly=_plotly_script() if needs_plotly else "",
        generated=_now(),
        summary=html.escape(summary),
        notebooks=html.escape(", ".join(spec.notebooks)),
        table=table,
        sections="\n".join(sections),
    )
    target = batch_dir / INDEX
    batch_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(page)
    return target


def _plotly_script() -> str:
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.done {{ color: #1a7f37; }} .failed {{ color: #c62828; font-weight: bold; }} .running, .pending {{ color: #8a6d00; }}
.note {{ color: #555; font-style: italic; }}
</style>
{plotly}
</head><body>
<h1>{title}</h1>
<p>Generated {generated}. Runs: {summary}. Notebooks: {notebooks}.</p>
<h2>Runs</h2>
{table}
{sections}
</body></html>
"""


PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# ---------------------------------------------------------------------------------------------------------------
# Progress bars: what a terminal would show


def terminal_text(text: str) -> str:
    """`text` as a terminal leaves it on screen: on each line, what the last carriage return wrote.

    A text progress bar redraws its line with `\r` at every update; an executed notebook keeps every frame (a model
    load leaves a hundred of them), while a person wants the bar's end state. Progress bars rewrite the whole line,
    so a frame replaces the line rather than overtyping its start; an empty frame (a trailing `\r`) erases nothing.
    """
    lines = []
    for line in text.split("\n"):
        frames = [f for f in line.split("\r") if f]
        lines.append(frames[-1] if frames else "")
    return "\n".join(lines)


def collapse_progress(nb: Any) -> int:
    """Merge each cell's consecutive stream outputs of one stream (a kernel sends a bar's frames as separate
    messages) and keep what a terminal would show (`terminal_text`); drop outputs left empty. In place; returns
    how many outputs were merged or changed."""
    changed = 0
    for cell in nb.cells:
        outputs = cell.get("outputs")
        if not outputs:
            continue
        merged: list[Any] = []
        for out in outputs:
            last = merged[-1] if merged else None
            if (out.get("output_type") == "stream" and last is not None and last.get("output_type") == "stream"
                    and last.get("name") == out.get("name")):
                last["text"] += out.get("text", "")
                changed += 1
            else:
                merged.append(out)
        kept = []
        for out in merged:
            if out.get("output_type") == "stream":
                text = terminal_text(out.get("text", ""))
                if text != out.get("text", ""):
                    out["text"] = text
                    changed += 1
                if not text:
                    continue
            kept.append(out)
        cell["outputs"] = kept
    return changed


def collapse_progress_file(path: str | Path) -> int:
    """`collapse_progress` on an executed notebook file, rewritten only when something changed."""
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    changed = collapse_progress(nb)
    if changed:
        nbformat.write(nb, Path(path))
    return changed


# ---------------------------------------------------------------------------------------------------------------
# Notebook files: offline HTML export, stripping outputs


_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{{ resources.ropd_head_js }}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
_WIDGET_NOTE = ('<p style="color:#555;font-style:italic">(an interactive widget: open the notebook in JupyterLab '
                'to use it)</p>')


def _static_outputs(nb: Any) -> bool:
    """Turn plotly mimetype outputs into offline HTML figures and widget views into a note. True if any figure."""
    import plotly.io as pio

    figures = False
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data:
                spec = data.pop(PLOTLY_MIME)
                fig = {k: spec[k] for k in ("data", "layout", "frames") if k in spec}
                data["text/html"] = pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False,
                                                config=spec.get("config"))
                figures = True
            elif WIDGET_MIME in data:
                out["data"] = {"text/html": _WIDGET_NOTE}
    return figures


def export_html(notebook: str | Path, target: str | Path | None = None) -> Path:
    """An executed notebook as one self-contained HTML file that renders offline: plotly.js inlined once, no CDN
    scripts (require.js, MathJax, widget manager), images embedded."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs

    source = Path(notebook)
    nb = nbformat.read(source, as_version=4)
    collapse_progress(nb)  # a bar is one line with its end state, also for a notebook executed elsewhere
    nb.metadata.pop("widgets", None)  # widget views are not rendered here (see _static_outputs)
    head = f'<script type="text/javascript">{get_plotlyjs()}</script>' if _static_outputs(nb) else ""
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"ropd_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="ropd_offline.html.j2",
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"ropd_head_js": head, "metadata": {"name": source.stem}})
    out = Path(target) if target else source.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _stripped(nb: Any) -> bool:
    """Clear outputs, execution counts and run metadata in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            if key in meta:
                del meta[key]
                changed = True
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
    for key in ("papermill", "widgets"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def strip(paths: Iterable[str | Path]) -> list[Path]:
    """Clear outputs and execution counts of notebooks (tags such as `parameters` are kept). Returns changed files."""
    import nbformat

    changed = []
    for p in paths:
        path = Path(p)
        nb = nbformat.read(path, as_version=4)
        if _stripped(nb):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def unstripped(paths: Iterable[str | Path]) -> list[Path]:
    """The notebooks among `paths` that still carry outputs, execution counts or run metadata."""
    import nbformat

    return [Path(p) for p in paths if _stripped(nbformat.read(Path(p), as_version=4))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.batch.report", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("strip", "clear outputs and execution counts"), ("check", "fail if a notebook has outputs")):
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="+")
    p = sub.add_parser("html", help="export an executed notebook as offline HTML")
    p.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "strip":
        for path in strip(args.paths):
            print(f"stripped {path}")
        return 0
    if args.cmd == "check":
        dirty = unstripped(args.paths)
        for path in dirty:
            print(f"{path}: has outputs (run `make strip-notebooks`)", file=sys.stderr)
        return 1 if dirty else 0
    for path in args.paths:
        print(export_html(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
