"""The HTML report (swallowlib.report): built from small executed notebooks made here, checked as HTML and, when
Debian's chromium + chromium-driver are installed (.ci/run installs them), rendered in headless Chromium."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from swallowlib import paths, report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PROFILE = "unit"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FINDINGS = [
    # claim, source, measure, ours, paper, verdict, reason
    ("VE makes Japanese text cheaper", "paper", "tokens per char", "0.61", "0.56", "holds", "fewer tokens"),
    ("CPT beats scratch", "paper", "JA score", "0.31", "0.48", "does not hold", "scratch won at this scale"),
    ("Init method matters early", "beyond the paper", "loss @ step 0", "7.1 vs 7.3", "", "inconclusive", "1 seed"),
    ("Parallel text helps", "paper", "ref bits/byte", "—", "", "not measured", "no cpt-ve-para run"),
]
TABLE = pd.DataFrame({"run": ["base", "cpt-ve", "cpt-nve"], "ja_score": [0.12, 0.31, 0.27]})


def _png(width_px: int, height_px: int) -> bytes:
    """A real matplotlib PNG of exactly ``width_px`` × ``height_px``."""
    fig, ax = plt.subplots(figsize=(width_px / 50, height_px / 50), dpi=50)
    ax.plot([0, 1, 2], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


def _executed_notebook(title: str, duration: float, *, fail: bool = False) -> nbformat.NotebookNode:
    """What papermill leaves behind: outputs, and metadata.papermill with duration/exception/end time."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papermill"] = {
        "duration": duration,
        "exception": True if fail else None,
        "start_time": "2026-01-02T03:04:05.000000+00:00",
        "end_time": "2026-01-02T03:05:05.000000+00:00",
        "status": "failed" if fail else "completed",
    }
    # an ipywidgets progress bar, as tqdm leaves in the real notebooks: its view cannot render offline
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    png = base64.b64encode(_png(200, 150)).decode()
    nb.cells = [
        new_markdown_cell(f"# {title}\n\nWhat this stage does."),
        new_code_cell(
            "plot_scores()",
            execution_count=1,
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
                        "text/plain": "Loading weights:   0%|          | 0/39",
                    },
                ),
                new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 200x150>"}),
            ],
        ),
        new_code_cell(
            "scores",
            execution_count=2,
            outputs=[
                new_output(
                    "execute_result",
                    data={"text/html": TABLE.to_html(), "text/plain": TABLE.to_string()},
                    execution_count=2,
                )
            ],
        ),
    ]
    if fail:
        nb.cells.append(
            new_code_cell(
                "train()",
                execution_count=3,
                outputs=[new_output("error", ename="RuntimeError", evalue="loss is NaN\nat step 7", traceback=[])],
            )
        )
    return nb


def _write_findings(rows=FINDINGS) -> Path:
    path = paths.analysis_dir(PROFILE) / "findings.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=list(report.FINDINGS_COLUMNS))
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A profile with two executed notebooks, a findings table and one figure, all under tmp_path."""
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    nb_dir = paths.executed_notebooks_dir(PROFILE)
    nb_dir.mkdir(parents=True)
    nbformat.write(_executed_notebook("01 · Corpus", 4.95), nb_dir / "01_corpus.ipynb")
    nbformat.write(_executed_notebook("02 · Eval", 436.04), nb_dir / "02_eval.ipynb")
    _write_findings()
    paths.figures_dir(PROFILE).mkdir(parents=True)
    (paths.figures_dir(PROFILE) / "eval_curves.png").write_bytes(_png(320, 240))
    return tmp_path


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_index_shows_findings_figures_and_notebooks(study):
    index = report.build_report(PROFILE)
    assert index == paths.report_dir(PROFILE) / "index.html"
    soup = _soup(index)
    assert soup.select_one("#profile").text == PROFILE

    rows = soup.select("#findings tbody tr")
    assert [r.find_all("td")[0].text for r in rows] == [f[0] for f in FINDINGS]
    verdicts = [(td.text, td["class"]) for td in soup.select("#findings td.verdict")]
    assert verdicts == [
        ("holds", ["verdict", "v-holds"]),
        ("does not hold", ["verdict", "v-not"]),
        ("inconclusive", ["verdict", "v-inconclusive"]),
        ("not measured", ["verdict", "v-unmeasured"]),
    ]

    img = soup.select_one("#fig-eval_curves img")
    copied = index.parent / img["src"]
    assert copied.read_bytes() == (paths.figures_dir(PROFILE) / "eval_curves.png").read_bytes()

    nb_rows = soup.select("#notebooks tbody tr")
    assert [r.a["href"] for r in nb_rows] == ["01_corpus.html", "02_eval.html"]
    assert all((index.parent / r.a["href"]).is_file() for r in nb_rows)
    cells = [[td.text for td in r.find_all("td")] for r in nb_rows]
    assert cells[0][1:4] == ["01 · Corpus", "5.0 s", "ok"]
    assert cells[1][1:4] == ["02 · Eval", "7 min 16 s", "ok"]
    assert cells[0][4] == "2026-01-02 03:05:05 UTC"


def test_notebook_page_is_offline_and_drops_widget_views(study):
    report.build_report(PROFILE)
    page = paths.report_dir(PROFILE) / "01_corpus.html"
    text = page.read_text(encoding="utf-8")
    soup = BeautifulSoup(text, "html.parser")
    remote = [s["src"] for s in soup.find_all("script", src=True) if not s["src"].startswith(("data:", "file:"))]
    assert remote == []  # require.js, MathJax (no math here) and the widget renderer are not fetched from a CDN
    assert "widget-view+json" not in text and "0/39" not in text
    assert soup.select_one(".swallow-nav a")["href"] == "index.html"
    assert soup.title.text == f"01 · Corpus · {PROFILE}"
    assert soup.select("img[src^='data:image/png;base64,']")
    assert len(soup.select("table.dataframe tbody tr")) == len(TABLE)
    assert "plot_scores()" in soup.select_one(".jp-CodeCell .jp-InputArea").text  # code stays in the page


def test_build_is_deterministic(study):
    def snapshot() -> dict[str, bytes]:
        root = paths.report_dir(PROFILE)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    report.build_report(PROFILE)
    first = snapshot()
    report.build_report(PROFILE)
    assert snapshot() == first
    assert set(first) == {"index.html", "01_corpus.html", "02_eval.html", "figures/eval_curves.png"}


def test_every_image_has_alt_text(study):
    """Every <img> of every page says what it shows: the index's figures their known caption (or, for a figure the
    report does not know, its name), a notebook's images the section and sentence of the Markdown above them."""
    (paths.figures_dir(PROFILE) / "new_plot.png").write_bytes(_png(100, 80))
    index = report.build_report(PROFILE)
    pages = sorted(index.parent.glob("*.html"))
    images = {page.name: _soup(page).find_all("img") for page in pages}
    assert all(images.values()), images  # each page has images to check
    placeholder = "No description has been provided for this image"  # nbconvert's alt for an image it knows nothing of
    missing = [(name, str(img)[:80]) for name, imgs in images.items() for img in imgs
               if not img.get("alt", "").strip() or img["alt"] == placeholder]  # fmt: skip
    assert missing == []
    soup = _soup(index)
    assert soup.select_one("#fig-eval_curves img")["alt"] == report.FIGURE_CAPTIONS["eval_curves"]
    assert soup.select_one("#fig-new_plot img")["alt"] == "Figure: new plot"
    assert [img["alt"] for img in images["01_corpus.html"]] == ["01 · Corpus — What this stage does."]


def test_rebuild_drops_pages_of_removed_notebooks(study):
    report.build_report(PROFILE)
    (paths.executed_notebooks_dir(PROFILE) / "02_eval.ipynb").unlink()
    report.build_report(PROFILE)
    out = paths.report_dir(PROFILE)
    assert not (out / "02_eval.html").exists()
    assert "02_eval" not in (out / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.parent.iterdir()) == ["analysis", "notebooks", "report"]  # no staging/old dir


def test_missing_notebooks_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    with pytest.raises(FileNotFoundError) as err:
        report.build_report(PROFILE)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(paths.executed_notebooks_dir(PROFILE)) in msg and f"make reproduce PROFILE={PROFILE}" in msg
    assert not paths.report_dir(PROFILE).exists()


def test_failed_notebook_is_shown_as_failed(study):
    failed = _executed_notebook("03 · Pretrain", 12.0, fail=True)
    nbformat.write(failed, paths.executed_notebooks_dir(PROFILE) / "03_pretrain.ipynb")
    index = report.build_report(PROFILE)
    soup = _soup(index)
    row = soup.select_one("#notebooks tr.nb-failed")
    assert row.a["href"] == "03_pretrain.html"
    assert "failed: RuntimeError: loss is NaN" in row.select_one("td.status-failed").text
    assert "1 failed" in soup.select_one("#notebooks").find_previous("p").text
    assert [r["class"] for r in soup.select("#notebooks tbody tr")].count(["nb-ok"]) == 2
    nav = _soup(index.parent / "03_pretrain.html").select_one(".swallow-nav .status-failed")
    assert nav.text == "FAILED after 12.0 s"


def test_failed_evaluation_tasks_are_announced_first(study):
    """Stage 05's failures table puts a notice at the top of the index; no notice when nothing failed."""
    assert _soup(report.build_report(PROFILE)).select_one("#eval-failures") is None
    failures = paths.eval_dir(PROFILE) / "failures.csv"
    failures.parent.mkdir(parents=True)
    pd.DataFrame([["cpt-ve", "final", 98, 12544, "ja_leaderboard_xlsum", "ModuleNotFoundError: `emoji` is required"],
                  ["cpt-nve", "step-00000010", 10, 1280, "(checkpoint)", "CheckpointError: <missing> weights"]],
                 columns=["run", "checkpoint", "step", "tokens", "task", "error"]).to_csv(failures, index=False)
    soup = _soup(report.build_report(PROFILE))
    notice = soup.select_one("#eval-failures")
    assert notice is not None and "2 evaluation task(s) FAILED" in notice.text
    assert notice.find_next("h2").text == "Findings"  # above the findings
    rows = [[td.text for td in tr.find_all("td")] for tr in notice.select("tbody tr")]
    assert rows[0] == ["cpt-ve", "final", "ja_leaderboard_xlsum", "ModuleNotFoundError: `emoji` is required"]
    assert rows[1][3] == "CheckpointError: <missing> weights"  # escaped, shown as written


def test_index_without_findings_says_so(study):
    (paths.analysis_dir(PROFILE) / "findings.csv").unlink()
    soup = _soup(report.build_report(PROFILE))
    assert soup.select_one("#findings") is None
    note = soup.select_one("#no-findings").text
    assert "No findings table yet" in note and "findings.csv" in note
    assert soup.select("#fig-eval_curves img") and len(soup.select("#notebooks tbody tr")) == 2


def test_bad_findings_table_fails_naming_file_and_line(study):
    bad = list(FINDINGS)
    bad[1] = bad[1][:5] + ("holds-ish", bad[1][6])
    path = _write_findings(bad)
    with pytest.raises(ValueError, match=rf"^{path}:3: verdict 'holds-ish' is not one of holds, does not hold"):
        report.build_report(PROFILE)
    path.write_text("claim,verdict\nx,holds\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"findings.csv: missing column\(s\) source, measure, ours, paper, reason"):
        report.build_report(PROFILE)
    assert not paths.report_dir(PROFILE).exists()


def test_cli_prints_index(study, capsys):
    report.main(["--profile", PROFILE])
    assert capsys.readouterr().out.strip() == str(paths.report_dir(PROFILE) / "index.html")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "—"), (4.95, "5.0 s"), (59.94, "59.9 s"), (436.04, "7 min 16 s"), (3725, "1 h 02 min")],
)
def test_format_duration(seconds, shown):
    assert report.format_duration(seconds) == shown


# --- rendered in a real browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through its own chromedriver; an explicit Service path means Selenium Manager is
    never consulted, so nothing is downloaded."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs Debian chromium + chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    # --no-sandbox: CI and the dev machines run as root, where chromium refuses its sandbox
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


_IMAGES_JS = """
return Array.from(document.images).map(img => {
  img.scrollIntoView({block: "center"});
  const r = img.getBoundingClientRect();
  return {complete: img.complete, naturalWidth: img.naturalWidth, width: r.width, height: r.height,
          onScreen: r.bottom > 0 && r.top < window.innerHeight && r.right > 0 && r.left < window.innerWidth};
});
"""
_REMOTE_JS = "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !/^(file|data):/.test(n));"


def _assert_images_visible(driver, expected_widths: list[int]) -> None:
    images = driver.execute_script(_IMAGES_JS)
    assert [i["naturalWidth"] for i in images] == expected_widths, images  # 0 would mean the image did not load
    for i in images:
        assert i["complete"] and i["width"] > 0 and i["height"] > 0 and i["onScreen"], i


def test_report_renders_in_headless_chromium(study, browser):
    from selenium.webdriver.common.by import By

    index = report.build_report(PROFILE)
    browser.get(index.as_uri())
    assert browser.title == f"Swallow, reproduced — {PROFILE}"
    _assert_images_visible(browser, [320])

    table = browser.find_element(By.ID, "findings")
    browser.execute_script("arguments[0].scrollIntoView()", table)
    assert table.is_displayed()
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [f[0] for f in FINDINGS]
    assert all(r.is_displayed() and r.size["height"] > 0 for r in rows)
    cells = table.find_elements(By.CSS_SELECTOR, "td.verdict")
    colours = [c.value_of_css_property("background-color") for c in cells]
    assert len(set(colours)) == len(FINDINGS) and "rgba(0, 0, 0, 0)" not in colours, colours  # each styled, distinctly
    assert browser.execute_script(_REMOTE_JS) == []

    browser.find_element(By.LINK_TEXT, "01_corpus").click()
    assert browser.current_url.endswith("/01_corpus.html")
    _assert_images_visible(browser, [200])
    df_rows = browser.find_elements(By.CSS_SELECTOR, "table.dataframe tbody tr")
    assert len(df_rows) == len(TABLE) and all(r.is_displayed() for r in df_rows)
    assert df_rows[1].text.split() == ["1", "cpt-ve", "0.31"]
    code = browser.find_element(By.CSS_SELECTOR, ".jp-CodeCell .jp-Cell-inputWrapper")
    assert code.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "label[for='swallow-hide-code']").click()
    assert not code.is_displayed()  # the code switch folds code away without JavaScript
    assert browser.execute_script(_REMOTE_JS) == []

