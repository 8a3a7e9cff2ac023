"""HTML report of a profile's executed notebooks: ``runs/<profile>/report/index.html`` plus one page per notebook.

python -m swallowlib.report --profile tiny        # or: make report PROFILE=tiny
"""

from __future__ import annotations

import argparse
import html
import logging
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from swallowlib import paths
from swallowlib.provenance import write_text_atomic

log = logging.getLogger(__name__)


def build_report(profile: str) -> Path:
    """Render every executed notebook of ``profile`` to HTML (code folded into the narrative) and an index."""
    src = paths.executed_notebooks_dir(profile)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(
            f"{src}: no executed notebooks — run `make reproduce PROFILE={profile}` first"
        )
    out = paths.run_dir(profile) / "report"
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    links = []
    for nb_path in notebooks:
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        page = out / f"{nb_path.stem}.html"
        write_text_atomic(page, body)
        links.append(f'<li><a href="{html.escape(page.name)}">{html.escape(nb_path.stem)}</a></li>')
    index = out / "index.html"
    index.write_text(
        f"<!doctype html><meta charset='utf-8'><title>swallow · {html.escape(profile)}</title>"
        f"<h1>swallow — profile <code>{html.escape(profile)}</code></h1><ol>{''.join(links)}</ol>\n",
        encoding="utf-8",
    )
    log.info("report: %s", index)
    return index


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny", help="configs/<profile>.yaml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(build_report(args.profile))


if __name__ == "__main__":
    main()
