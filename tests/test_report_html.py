"""report.html: one self-contained page per run, rebuilt from a stored run by `bench.py report RUN`.

Read with the standard library's HTML parser everywhere; rendered by headless Chromium where it is installed.
"""

import base64
import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unlearnbench.benchmarks.base import Suite
from unlearnbench.benchmarks.clip import ClipSuite
from unlearnbench.cli import main
from unlearnbench.reports.run_report import write_run_report
from unlearnbench.reports.tables import MISSED, MISSED_NOTE
from unlearnbench.compute import save_answers
from unlearnbench.runner import RunSpec, run

SECTIONS = ["results", "figures", "configuration", "units"]
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What the tests read of a page: section ids, tags, image sources, links, table rows and text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections, self.tags, self.images, self.links, self.rows, self.text = [], [], [], [], [], []
        self.attrs: dict[str, dict[str, str]] = {}  # element id -> its attributes
        self.in_cell = False
        self.feed(text)
        self.text = " ".join(" ".join(self.text).split())

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in attrs:
            self.attrs[attrs["id"]] = attrs
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "tr":
            self.rows.append((attrs.get("class", ""), []))
        if tag in ("td", "th") and self.rows:
            self.rows[-1][1].append("")
            self.in_cell = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.in_cell:
            self.rows[-1][1][-1] = self.rows[-1][1][-1].strip()
            self.in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self.in_cell:
            self.rows[-1][1][-1] += data


@pytest.fixture(scope="session")
def micro_run(micro_suite, tmp_path_factory):
    """A real micro clip run of SLUG and noop (noop misses the goal) with its report written."""
    spec = RunSpec(suite="clip", methods=["slug", "noop"], out_dir=tmp_path_factory.mktemp("runs"), run_id="micro")
    result = run(spec, micro_suite)
    write_run_report(result, ClipSuite)
    return result


def read_page(run_dir) -> Page:
    return Page((run_dir / "report.html").read_text())


def test_report_has_every_section_inline_pngs_and_no_network(micro_run):
    page = read_page(micro_run.run_dir)
    assert page.sections == SECTIONS
    # forget vs retain, costs, and SLUG's layers and step search
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    assert not [link for link in page.links if re.match(r"\s*(https?:)?//", link, re.I)]
    assert all(link.startswith(("data:", "#")) for link in page.links)
    assert not {"script", "link", "iframe", "object"} & set(page.tags), "the page must need nothing but itself"


def test_report_shows_the_manifest_and_directions(micro_run):
    page, manifest = read_page(micro_run.run_dir), micro_run.manifest
    assert f"clip v{ClipSuite.version}" in page.text and manifest["suite"]["model"] in page.text
    assert manifest["suite"]["model_fingerprint"] in page.text and manifest["targets"][0] in page.text
    assert "units reused 0 of 2" in page.text
    for name, method in manifest["methods"].items():
        assert name in page.text and method["config_hash"] in page.text
    for unit in manifest["units"].values():
        assert unit["code_fingerprint"] in page.text
    assert "torch " + manifest["packages"]["torch"] in page.text
    header = next(cells for _, cells in page.rows if cells and cells[0] == "method" and "FA@1 ↓" in cells)
    assert "TA_CA@1 ↑" in header and "MIA ↓" in header and "goal_met ↑" in header


def test_a_method_that_missed_its_goal_is_marked(micro_run):
    page = read_page(micro_run.run_dir)
    marked = [cells[0] for classes, cells in page.rows if "missed" in classes.split()]
    assert f"noop{MISSED}" in marked and "slug" not in marked
    assert MISSED_NOTE in page.text


def test_samples_and_answers_are_shown_and_every_string_escaped(micro_run, tmp_path, capsys):
    """A generative suite's sample grid and a question-answering suite's answers, on a copy of the run;
    a setting and an answer that look like markup stay text."""
    run_dir = shutil.copytree(micro_run.run_dir, tmp_path / "run")
    unit = next(name for name, info in micro_run.manifest["units"].items() if info["method"] == "noop")
    grid = np.zeros((32, 64, 3), np.uint8)
    (run_dir / "samples").mkdir()
    Image.fromarray(grid).save(run_dir / "samples" / f"{unit}.png")
    hostile = "<img src=x onerror=alert(1)> | <b>"
    questions = pd.DataFrame({"question": ["who is this?", "what colour?"], "answer": ["Ulrike", "red"]})
    save_answers(questions, questions.assign(answer=[hostile, "red"]), run_dir / "answers" / f"{unit}.parquet")
    stored = pd.read_parquet(run_dir / "answers" / f"{unit}.parquet")  # data, which the page renders
    assert stored.values.tolist() == [["who is this?", "Ulrike", hostile], ["what colour?", "red", "red"]]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["suite"]["config"]["device"] = "<script>alert(2)</script>"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))

    assert main(["report", str(run_dir)]) == 0
    page = read_page(run_dir)
    assert len(page.images) == 5 and not {"script", "b"} & set(page.tags)
    assert ["who is this?", "Ulrike", hostile] in [cells for _, cells in page.rows]
    assert "<script>alert(2)</script>" in page.text


def test_units_section_has_a_row_per_unit_with_its_choice(micro_run):
    page = read_page(micro_run.run_dir)
    header = next(cells for _, cells in page.rows if cells[:3] == ["target", "seed", "method"])
    assert "FA@1 ↓" in header and "MIA ↓" in header and {"goal", "layer", "step", "runtime (s) ↓"} <= set(header)
    rows = [cells for _, cells in page.rows if len(cells) == len(header) and cells[0] in micro_run.manifest["targets"]]
    assert [row[2].replace("\xa0", " ") for row in rows] == ["slug", f"noop{MISSED}"]  # kept on one line
    slug = dict(zip(header, rows[0]))
    layers = micro_run.artifacts[next(f"{n}/layers" for n, u in micro_run.manifest["units"].items()
                                      if u["method"] == "slug")]
    shown_layer = slug["layer"].replace("\u200b", "")  # zero-width spaces let a long name break after its dots
    assert slug["goal"] == "met" and shown_layer == layers.layer[layers.chosen].iloc[0] and float(slug["step"]) > 0
    assert "## Units" in (micro_run.run_dir / "table.md").read_text()


def test_lm_eval_utility_columns_reach_every_table(micro_run, tmp_path, capsys):
    """util:* metrics (lm-eval, llava suite) in records.parquet appear in the terminal, table.md and the page."""
    from unlearnbench import records as rec

    run_dir = shutil.copytree(micro_run.run_dir, tmp_path / "run")
    records = rec.read(run_dir / "records.parquet")
    scored = records[records.metric == "FA@1"]
    util = pd.concat([scored.assign(metric="util:ub_vqa:acc", value=0.75),
                      scored.assign(metric="util:ub_vqa:acc_stderr", value=0.03)])
    rec.write(pd.concat([records, util], ignore_index=True), run_dir / "records.parquet")
    assert main(["report", str(run_dir)]) == 0
    terminal = capsys.readouterr().out
    for text in (terminal, (run_dir / "table.md").read_text(), (run_dir / "report.html").read_text()):
        assert "util:ub_vqa:acc" in text and "acc_stderr" not in text
    header = next(cells for _, cells in read_page(run_dir).rows if cells and cells[0] == "method")
    assert "util:ub_vqa:acc" in header


def fingerprint(folder) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}


def test_bench_report_rebuilds_a_stored_run_without_recomputing(micro_run, tmp_path, capsys, monkeypatch):
    run_dir = shutil.copytree(micro_run.run_dir, tmp_path / "run")
    table = (run_dir / "table.md").read_text()
    for derived in ["report.html", "table.md", "table.tex", *[p.name for p in run_dir.glob("*.png")]]:
        (run_dir / derived).unlink()
    shutil.rmtree(run_dir / "plots")
    stored = fingerprint(run_dir)

    def never(*args, **kwargs):
        raise AssertionError("bench.py report must not compute anything")

    monkeypatch.setattr("unlearnbench.runner.run", never)
    for name in ("base_model", "evaluate", "task"):
        monkeypatch.setattr(Suite, name, never)
        monkeypatch.setattr(ClipSuite, name, never)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and f"noop{MISSED}" in out
    assert (run_dir / "table.md").read_text() == table
    assert {p.relative_to(micro_run.run_dir) for p in micro_run.run_dir.rglob("*.png")} == {
        p.relative_to(run_dir) for p in run_dir.rglob("*.png")}
    assert read_page(run_dir).sections == SECTIONS
    now = fingerprint(run_dir)
    assert {path: now[path] for path in stored} == stored, "records, manifest, units and artifacts stay as they were"


def a_file(folder):
    path = folder / "notes.txt"
    path.write_text("not a run")
    return path


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder / "nowhere", "no such folder"),
    (lambda folder: folder, "no records.parquet"),
    (a_file, "a file, not a folder"),
])
def test_bench_report_refuses_what_is_not_a_run(tmp_path, capsys, make, message):
    target = make(tmp_path)
    before = fingerprint(tmp_path)
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert fingerprint(tmp_path) == before, "a refused folder is left as it was"


def test_bench_report_names_an_unregistered_suite(micro_run, tmp_path, capsys):
    run_dir = shutil.copytree(micro_run.run_dir, tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["suite"]["name"] = "mysuite"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "suite 'mysuite', which is not registered" in err and "--plugin" in err and "Traceback" not in err


def test_a_paper_table_gets_one_page_for_its_runs(micro_suite, tmp_path, monkeypatch):
    """`bench.py paper` writes report.html beside its table, each of its runs one beside its records (here the
    clip table cut to slug and noop on one target of the micro suite)."""
    from dataclasses import replace

    from unlearnbench.reports import paper

    monkeypatch.setitem(paper.PAPER_TABLES, "clip-table",
                        replace(paper.PAPER_TABLES["clip-table"], methods=("slug", "noop"), targets="1"))
    micro = ["--set", "embedded=micro", "--set", "retain_samples=128", "--set", "batch_size=32",
             "--set", "forget_metric=FA@1"]
    assert main(["paper", "clip-table", *micro, "--out", str(tmp_path)]) == 0
    folder = tmp_path / "paper-clip-table"
    page = read_page(folder)
    assert page.sections == SECTIONS and len(page.images) == 4
    assert all(base64.b64decode(src.split(",", 1)[1]).startswith(PNG) for src in page.images)
    header = next(cells for _, cells in page.rows if "FA@1 ↓" in cells)
    assert "FA@1 (published‡) ↓" in header and "TA_CA@1 (published‡) ↑" in header
    assert f"noop{MISSED}" in [cells[0] for classes, cells in page.rows if "missed" in classes.split()]
    for run_dir in json.loads((folder / "runs.json").read_text()).values():
        assert read_page(Path(run_dir)).sections == SECTIONS


# -- in a browser ------------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium")
# Headless, offline: every host name resolves to nothing, and Chromium's own background fetches are off.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking", "--no-first-run",
                  "--enable-logging=stderr", "--v=0"]
# Run once after load in a test copy of the page (the page itself has no script): records what rendered.
RENDER_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const mark = document.createElement("div");
  mark.id = "render-check";
  mark.dataset.images = images.length;
  mark.dataset.broken = images.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)).length;
  mark.dataset.sections = [...document.querySelectorAll("section")]
    .map(s => s.id + ":" + Math.round(s.getBoundingClientRect().height)).join(" ");
  document.body.appendChild(mark);
});
</script>"""


def chromium(page, tmp_path, *flags) -> subprocess.CompletedProcess:
    netlog = tmp_path / f"{page.stem}.netlog.json"
    done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--log-net-log={netlog}", *flags, page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    done.page_requests = page_requests(netlog)
    return done


def page_requests(netlog) -> list[str]:
    """URLs the page asked the network for (Chromium's own requests are keyed to no file:// page)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [event["params"]["url"] for event in log["events"] if event["type"] == start
            and str(event["params"].get("network_isolation_key", "")).startswith("file://")]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); "
                    "the HTML parser tests above still check the page")
def test_report_renders_offline_in_chromium(micro_run, tmp_path):
    report = micro_run.run_dir / "report.html"
    screenshot = tmp_path / "report.png"
    shown = chromium(report, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,4000")
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"the page logged to the console (a blocked load or an error): {console}"
    assert shown.page_requests == []
    with Image.open(screenshot) as image:
        assert image.size == (1280, 4000)
        assert image.convert("RGB").getcolors(maxcolors=256) is None, "the screenshot has hardly any colours"

    checked = tmp_path / "checked.html"
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.read_text())
    checked.write_text(page.replace("</body>", RENDER_CHECK + "</body>"))
    dom = Page(chromium(checked, tmp_path, "--dump-dom", "--virtual-time-budget=10000").stdout)
    mark = dom.attrs["render-check"]
    assert int(mark["data-images"]) == len(read_page(micro_run.run_dir).images) and mark["data-broken"] == "0"
    heights = dict(item.split(":") for item in mark["data-sections"].split())
    assert list(heights) == SECTIONS and all(int(h) > 0 for h in heights.values())

    # The request check can see a page's requests: a page that asks for a remote image is caught.
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://example.com/x.png"></body></html>')
    assert chromium(control, tmp_path, "--dump-dom").page_requests == ["http://example.com/x.png"]
