"""HTML report of a profile: ``runs/<profile>/report/`` — a landing page and one page per executed notebook.

python -m swallowlib.report --profile tiny        # or: make report PROFILE=tiny

``index.html`` opens with a notice of stage 05's failed evaluation tasks (``runs/<profile>/eval/failures.csv``)
when there are any, then shows the findings table (``runs/<profile>/analysis/findings.csv``, when the analysis has
written it) with each verdict coloured, the study's figures (``figures/<profile>/*.png``, copied into
``report/figures/``, each captioned and alt-texted with what it shows, :data:`FIGURE_CAPTIONS`), and a link to each
executed notebook with its papermill duration and whether it failed. Each notebook page is nbconvert's lab template
with the code kept visible (a "hide code" switch folds it away), every image output given an alt text from the
Markdown above it, and nothing fetched from the network unless a notebook contains LaTeX (MathJax comes from a CDN;
offline, the TeX shows as written).

The directory is self-contained (open ``index.html`` from disk) and rebuilt deterministically: the same inputs give
byte-identical pages, and the only times shown are those recorded by papermill in the notebooks. It is built in a
staging directory and swapped in whole, so a failed build never leaves half a report.
"""

from __future__ import annotations

import argparse
import copy
import csv
import html
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from swallowlib import paths
from swallowlib.provenance import publish_dir, write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

FINDINGS_COLUMNS = ("claim", "source", "measure", "ours", "paper", "verdict", "reason")
#: verdict → CSS class; anything else in findings.csv is an error (the analysis and the report share this contract).
VERDICTS = {"holds": "v-holds", "does not hold": "v-not", "inconclusive": "v-inconclusive",
            "not measured": "v-unmeasured"}  # fmt: skip
SOURCES = ("paper", "beyond the paper")

#: What each of the study's figures (``figures/<profile>/<stem>.png``) shows: its alt text and caption in the index.
FIGURE_CAPTIONS = {
    "corpus_funnel": "Corpus filter funnel: Japanese and English characters remaining after extraction, each "
                     "quality rule and near-duplicate removal",
    "tokenizer_efficiency": "Tokens each tokenizer needs for the same held-out text, relative to the base tokenizer, "
                            "per text domain",
    "embedding_init": "Initialising the new embedding rows: Japanese and English bits per character of each method "
                      "at step 0 and after a short CPT, and the loss of the first CPT steps",
    "train_loss": "Training loss per run against training tokens: lines are training batches, markers validation "
                  "at the checkpoints",
    "train_throughput": "Training throughput per run: tokens per second and Japanese characters per second, by step",
    "eval_curves": "Held-out bits per byte of every run against its training tokens: Japanese, English and "
                   "out-of-domain Japanese",
    "ve_vs_nve": "Vocabulary expansion (VE) vs none (NVE) and the base at the last checkpoint: bits per byte and "
                 "generation scores per task",
    "ve_vs_nve_matched": "Japanese bits per byte of VE and NVE against Japanese characters seen and against "
                         "training FLOPs",
    "parallel_ablation": "Parallel pairs in the CPT mix vs none: translation bits per byte, chrF and BLEU in both "
                         "directions",
    "cpt_vs_scratch": "Continual pre-training vs training from scratch: Japanese and English bits per byte at "
                      "every checkpoint",
    "abilities": "Which abilities gain most: each task's conditional bits per byte relative to step 0, per run",
    "longer_runs": "Longer CPT: Japanese bits per byte of VE and NVE and their continuations, and the VE − NVE gap",
    "vocab_sweep": "Vocabulary size sweep: Japanese bits per byte, characters per token and token ROUGE-2 against "
                   "the pieces added",
    "training_efficiency": "Japanese characters trained on per second and per PFLOP of compute, per run",
}  # fmt: skip

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_MATH = re.compile(r"\$[^$\n]+\$|\$\$|\\\(|\\\[|\\begin\{")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"[*`]+")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s")
_SECTION_NUMBER = re.compile(r"^\d+(\.\d+)*\.\s+")
_ALT_MAX = 200

# Notebook pages: the lab template, minus the CDN scripts a static offline page cannot use (require.js, the widget
# renderer — widget views are dropped before rendering), plus a way back to the index and a CSS-only code switch.
_PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
{%- if resources.swallow.needs_mathjax -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{% block extra_css %}
<style type="text/css">
.swallow-nav { font: 14px/1.4 system-ui, sans-serif; padding: 8px 16px; border-bottom: 1px solid #ddd;
  display: flex; gap: 24px; align-items: center; flex-wrap: wrap; background: #fafafa; }
.swallow-nav .status-failed { color: #a50e0e; font-weight: 600; }
.jp-Cell-inputWrapper { opacity: 0.85; }
#swallow-hide-code:checked ~ main .jp-CodeCell .jp-Cell-inputWrapper { display: none; }
</style>
{% endblock extra_css %}
{#- every image output carries the alt text _label_images put in its metadata -#}
{%- macro img_alt(output) -%}<img alt="{{ output.metadata.swallow_alt | escape_html }}" {% endmacro -%}
{% block data_png scoped %}{{ super() | replace('<img ', img_alt(output)) }}{% endblock data_png %}
{% block data_jpg scoped %}{{ super() | replace('<img ', img_alt(output)) }}{% endblock data_jpg %}
{% block data_svg scoped %}{{ super() | replace('<img ', img_alt(output)) }}{% endblock data_svg %}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<input type="checkbox" id="swallow-hide-code" hidden>
<nav class="swallow-nav"><a href="index.html">&larr; report index</a>
<span>profile <code>{{ resources.swallow.profile | e }}</code></span>
<span>{{ resources.swallow.status_html }}</span>
<label for="swallow-hide-code" style="cursor:pointer"><u>show / hide code</u></label></nav>
<main>
{%- endblock body_header -%}
"""

_INDEX_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 0 auto;
  padding: 16px 24px 48px; color: #1f1f1f; }
h1 { margin-bottom: 0; } .sub { color: #555; margin-top: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { font-variant-numeric: tabular-nums; } #notebooks td.num { white-space: nowrap; }
.verdict { font-weight: 600; white-space: nowrap; }
.v-holds { background: #e6f4ea; color: #137333; }
.v-not { background: #fce8e6; color: #a50e0e; }
.v-inconclusive { background: #fef7e0; color: #7a5a00; }
.v-unmeasured { background: #f1f3f4; color: #5f6368; }
.status-ok { color: #137333; } .status-failed { color: #a50e0e; font-weight: 600; }
.status-incomplete, .status-unknown { color: #7a5a00; }
.note { background: #f6f6f6; border-left: 4px solid #bbb; padding: 8px 12px; }
.alert { background: #fce8e6; border-left: 4px solid #a50e0e; padding: 8px 12px; margin: 16px 0; }
.alert table { background: #fff; }
figure { margin: 16px 0 24px; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 14px; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""


@dataclass(frozen=True)
class NotebookEntry:
    """One executed notebook as the index lists it."""

    stem: str
    title: str
    duration_s: float | None
    status: str  # ok | failed | incomplete | unknown
    detail: str  # e.g. the failing cell's exception, or why the status is unknown
    end_time: str | None

    @property
    def page(self) -> str:
        return f"{self.stem}.html"


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first Markdown heading (its title), else the file name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or fallback
    return fallback


def _first_error(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = str(out.get("evalue", "")).splitlines()
                return f"{out.get('ename', 'Error')}: {first[0] if first else ''}".rstrip(": ")
    return ""


def _entry(nb_path: Path, nb: nbformat.NotebookNode) -> NotebookEntry:
    pm = nb.metadata.get("papermill")
    duration = end = None
    if not pm:
        status, detail = "unknown", "no papermill record in the notebook's metadata"
    else:
        duration = pm.get("duration")
        end = pm.get("end_time")
        if pm.get("exception"):
            status, detail = "failed", _first_error(nb) or "papermill recorded an exception"
        elif end is None:
            # papermill writes as it goes: a killed run leaves a notebook with a start but no end
            status, detail = "incomplete", "no end time: the run was interrupted"
        else:
            status, detail = "ok", ""
    return NotebookEntry(nb_path.stem, _title(nb, nb_path.stem), duration, status, detail, end)


def notebook_entries(profile: str) -> list[NotebookEntry]:
    """The executed notebooks of ``runs/<profile>/notebooks/``, in stage order, with papermill's durations."""
    return [_entry(p, nbformat.read(p, as_version=4)) for p in sorted(paths.run_dir(profile).glob("notebooks/*.ipynb"))]


def _shown(path: Path) -> str:
    """A path as the page shows it: relative to the repository when inside it, so reports do not name a home dir."""
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def _finished(end_time: str | None) -> str:
    if not end_time:
        return "—"
    try:
        return datetime.fromisoformat(end_time).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return end_time


def format_duration(seconds: float | None) -> str:
    """``4.9 s``, ``7 min 16 s``, ``1 h 02 min``; ``—`` when papermill recorded none."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _status_html(e: NotebookEntry) -> str:
    label = {"ok": "ran in", "failed": "FAILED after", "incomplete": "incomplete after", "unknown": "status unknown"}
    text = label[e.status] if e.status == "unknown" else f"{label[e.status]} {format_duration(e.duration_s)}"
    tip = f' title="{html.escape(e.detail)}"' if e.detail else ""
    return f'<span class="status-{e.status}"{tip}>{html.escape(text)}</span>'


def _for_static_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without ipywidgets views and state: in a static page they need a CDN renderer, and in these notebooks
    they are progress bars whose text fallback is a stale "0%" snapshot, so they are dropped rather than shown."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if _WIDGET_VIEW not in o.get("data", {})]
    _label_images(nb)
    return nb


def _plain_text(markdown: str) -> str:
    """Markdown as one line of plain text: links keep their text; emphasis and code marks go."""
    return " ".join(_MD_MARKS.sub("", _MD_LINK.sub(r"\1", markdown)).split())


def _section(markdown: str) -> tuple[str | None, str]:
    """A Markdown cell's last heading (None without one, section number dropped) and the first sentence of its
    prose."""
    heading, prose = None, []
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = _SECTION_NUMBER.sub("", _plain_text(line.lstrip("#")))
        else:
            prose.append(line)
    return heading, _SENTENCE_END.split(_plain_text("\n".join(prose)), maxsplit=1)[0]


def _shorten(text: str, limit: int = _ALT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _label_images(nb: nbformat.NotebookNode) -> None:
    """Give every image output an alt text (``metadata.swallow_alt``, which the page template writes): what the
    notebook says about it, i.e. the heading of its section and the first sentence of the Markdown above it, else
    the code that drew it. A matplotlib PNG carries no title of its own to use."""
    heading, sentence = None, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            new_heading, sentence = _section(cell.source)
            heading = new_heading or heading
            continue
        images = [o for o in cell.get("outputs", []) if any(t in o.get("data", {}) for t in _IMAGE_TYPES)]
        code = next((line for line in cell.source.splitlines() if line.strip()), "")
        text = " — ".join(x for x in (heading, sentence) if x) or f"Output of {code.strip()}"
        for k, out in enumerate(images, start=1):
            which = f" (image {k} of {len(images)})" if len(images) > 1 else ""
            out.setdefault("metadata", {})["swallow_alt"] = _shorten(text) + which


def _exporter() -> HTMLExporter:
    exporter = HTMLExporter(
        template_name="lab",
        template_file="swallow_page.html.j2",
        extra_loaders=[jinja2.DictLoader({"swallow_page.html.j2": _PAGE_TEMPLATE})],
    )
    # thousands of flushed log lines become one block instead of thousands of <pre>s
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)
    return exporter


def read_findings(path: Path) -> list[dict[str, str]] | None:
    """The rows of ``findings.csv`` (None when the analysis has not written it yet)."""
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FINDINGS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FINDINGS_COLUMNS)}")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        verdict = (row["verdict"] or "").strip().lower()
        if verdict not in VERDICTS:
            raise ValueError(f"{path}:{i}: verdict {row['verdict']!r} is not one of {', '.join(VERDICTS)}")
        row["verdict"] = verdict
    return rows


def read_eval_failures(path: Path) -> list[dict[str, str]]:
    """The rows of stage 05's ``failures.csv`` (tasks whose scores are missing); none when it is absent."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _eval_failures_html(rows: list[dict[str, str]], path: Path) -> str:
    """A notice above everything else: a failed task's scores are missing, and every table below lacks them."""
    if not rows:
        return ""
    cols = ("run", "checkpoint", "task", "error")
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(r.get(c) or '')}</td>" for c in cols) + "</tr>"
                     for r in rows)  # fmt: skip
    return (
        f'<div class="alert" id="eval-failures"><strong>{len(rows)} evaluation task(s) FAILED</strong>: their scores '
        "are missing from the results and from every table and figure built on them; the next evaluation run "
        f"retries them. Source: <code>{html.escape(_shown(path))}</code>.\n"
        f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>\n"
    )


def _findings_html(rows: list[dict[str, str]] | None, path: Path, profile: str) -> str:
    if rows is None:
        return (
            f'<p class="note" id="no-findings">No findings table yet: <code>{html.escape(_shown(path))}</code> '
            "does not exist. The analysis notebook writes it "
            f"(<code>make reproduce PROFILE={html.escape(profile)}</code>).</p>"
        )
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    summary = ", ".join(f'<span class="{VERDICTS[v]} verdict">{n} {html.escape(v)}</span>' for v, n in counts.items())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in FINDINGS_COLUMNS)
    body = []
    for r in rows:
        cells = []
        for c in FINDINGS_COLUMNS:
            text = html.escape(r[c] or "")
            if c == "verdict":
                cells.append(f'<td class="verdict {VERDICTS[r[c]]}">{text}</td>')
            elif c in ("ours", "paper"):
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f"<p>{len(rows)} claim(s): {summary}. Source: <code>{html.escape(_shown(path))}</code>.</p>\n"
        f'<table id="findings"><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody></table>"
    )


def figure_caption(stem: str) -> str:
    """What the figure ``<stem>.png`` shows (:data:`FIGURE_CAPTIONS`); for a figure not listed there, its name."""
    return FIGURE_CAPTIONS.get(stem) or "Figure: " + stem.replace("_", " ")


def _figures_html(figures: list[Path], src: Path) -> str:
    if not figures:
        return f'<p class="note">No figures in <code>{html.escape(_shown(src))}</code>.</p>'
    out = []
    for fig in figures:
        caption = figure_caption(fig.stem)
        out.append(
            f'<figure id="fig-{html.escape(fig.stem)}"><img src="figures/{html.escape(fig.name)}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)} '
            f"(<code>{html.escape(fig.name)}</code>)</figcaption></figure>"
        )
    return "\n".join(out)


def _notebooks_html(entries: list[NotebookEntry]) -> str:
    rows = []
    for e in entries:
        status = e.status + (f": {e.detail}" if e.detail else "")
        rows.append(
            f'<tr class="nb-{e.status}"><td><a href="{html.escape(e.page)}">{html.escape(e.stem)}</a></td>'
            f"<td>{html.escape(e.title)}</td><td class=\"num\">{html.escape(format_duration(e.duration_s))}</td>"
            f'<td class="status-{e.status}">{html.escape(status)}</td>'
            f"<td class=\"num\">{html.escape(_finished(e.end_time))}</td></tr>"
        )
    known = [e.duration_s for e in entries if e.duration_s is not None]
    failed = sum(e.status == "failed" for e in entries)
    total = f"{len(entries)} notebook(s), {format_duration(sum(known)) if known else '—'} in all"
    total += f", <span class=\"status-failed\">{failed} failed</span>" if failed else ""
    return (
        f"<p>{total}.</p>\n<table id=\"notebooks\"><thead><tr><th>notebook</th><th>title</th><th>duration</th>"
        "<th>status</th><th>finished (papermill)</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _index_html(profile: str, entries, findings, findings_path: Path, figures, figures_src: Path,
                failures: tuple[list[dict[str, str]], Path] | None = None) -> str:  # fmt: skip
    p = html.escape(profile)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n"
        f"<title>Swallow, reproduced — {p}</title>\n<style>{_INDEX_CSS}</style>\n</head>\n<body>\n"
        "<h1>Swallow, reproduced</h1>\n"
        f'<p class="sub">Cross-lingual continual pre-training (English → Japanese) with vocabulary expansion — '
        f'profile <code id="profile">{p}</code>. Rebuild with <code>make report PROFILE={p}</code>.</p>\n'
        f"{_eval_failures_html(*failures) if failures else ''}"
        f"<h2>Findings</h2>\n{_findings_html(findings, findings_path, profile)}\n"
        f"<h2>Notebooks</h2>\n{_notebooks_html(entries)}\n"
        f"<h2>Figures</h2>\n{_figures_html(figures, figures_src)}\n"
        "</body>\n</html>\n"
    )


def _write_pages(notebooks: list[Path], staged: Path, profile: str) -> list[NotebookEntry]:
    """One HTML page per executed notebook, written into ``staged``; the notebooks as the index lists them."""
    exporter = _exporter()
    entries = []
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        entry = _entry(nb_path, nb)
        entries.append(entry)
        nb = _for_static_page(nb)
        nb.metadata["title"] = f"{entry.title} · {profile}"
        needs_mathjax = any(c.cell_type == "markdown" and _MATH.search(c.source) for c in nb.cells)
        page_info = {"profile": profile, "status_html": _status_html(entry), "needs_mathjax": needs_mathjax}
        body, _ = exporter.from_notebook_node(nb, resources={"swallow": page_info})
        write_text_atomic(staged / entry.page, body)
        log.info("report: %s (%s)", entry.page, entry.status)
    return entries


def build_report(profile: str) -> Path:
    """Render every executed notebook of ``profile`` and the landing page into ``paths.report_dir(profile)``;
    returns the path of ``index.html``."""
    src = paths.executed_notebooks_dir(profile)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"{src}: no executed notebooks — run `make reproduce PROFILE={profile}` first")
    out = paths.report_dir(profile)
    findings_path = paths.analysis_dir(profile) / "findings.csv"
    findings = read_findings(findings_path)  # before any rendering: a bad table fails in a second, not a minute
    figures_src = paths.figures_dir(profile)
    figures = sorted(figures_src.glob("*.png"))

    staged = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    entries = _write_pages(notebooks, staged, profile)
    for fig in figures:
        write_bytes_atomic(staged / "figures" / fig.name, fig.read_bytes())
    failures_path = paths.eval_dir(profile) / "failures.csv"
    failures = read_eval_failures(failures_path)
    index_text = _index_html(profile, entries, findings, findings_path, figures, figures_src,
                             (failures, failures_path))  # fmt: skip
    write_text_atomic(staged / "index.html", index_text)
    publish_dir(staged, out)
    failed = [e.stem for e in entries if e.status == "failed"]
    if failed:
        log.warning("report: failed notebook(s): %s", ", ".join(failed))
    if failures:
        log.warning("report: %d failed evaluation task(s), listed at the top of the index", len(failures))
    log.info("report: %s", out / "index.html")
    return out / "index.html"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny", help="configs/<profile>.yaml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(build_report(args.profile))


if __name__ == "__main__":
    main()
