"""docs/regenerate.py (`make docs`) rewrites the docs' marked blocks from run folders' files, leaves a block
whose run is missing as it is and says so, and never publishes a time without the machine's matmul rate."""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import ROOT

SPEC = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(regenerate)

REPORT = """# Report: q

## What this run shows

Generated from the numbers below.

- Held-out MI bound: SAMI 0.963 [0.937, 0.992] nats is above base's 0.021 [0.010, 0.033] (95% intervals do \
not overlap, which is what the study was sized to show at 32 questions).
- Math: base greedy accuracy 38% [18, 61].

## Experiment 1

### Principle adherence (judge-free checkers)

Contrast = pass rate under the principle minus under its antithesis.

| checkpoint | lowercase |
|---|---|
| base | 0.00 [0.00, 0.00] |
| sami | 0.88 [0.62, 1.00] |

By principles flipped:

| flipped | sami |
|---|---|
| 1 | 72% |

### Training

| method | steps |
|---|---|
| sami | 32 |
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "q"
    (run / "report").mkdir(parents=True)
    (run / "report" / "report.md").write_text(REPORT)
    monkeypatch.setattr(regenerate, "ROOT", tmp_path)
    return tmp_path


def page(spec: str, body: str = "old\n") -> str:
    return f"before\n<!-- from {spec} -->\n{body}<!-- end -->\nafter\n"


def test_a_report_excerpt_takes_the_matching_lines_of_its_section_wrapped(root):
    said = []
    out = regenerate.regenerate(
        page('runs/q/report/report.md section="What this run shows" lines="^- Held"'), "P", said.append
    )
    body = out.split("-->\n", 1)[1].split("<!-- end -->")[0]
    lines = body.splitlines()
    assert lines[0] == "```text" and lines[-1] == "```"
    assert lines[1].startswith("- Held-out MI bound: SAMI 0.963 [0.937, 0.992] nats")
    assert all(len(line) <= regenerate.WIDTH for line in lines) and len(lines) == 4  # wrapped onto two lines
    assert lines[2].startswith("  ") and "Math" not in body and "Generated" not in body
    assert out.startswith("before\n") and out.endswith("<!-- end -->\nafter\n") and said == []
    assert regenerate.regenerate(out, "P", said.append) == out  # a second pass changes nothing


def test_a_markdown_excerpt_keeps_a_table_as_it_is(root):
    spec = 'runs/q/report/report.md section="Principle adherence (judge-free checkers)" lines="^\\|" as=markdown'
    out = regenerate.regenerate(page(spec), "P")
    assert "-->\n\n| checkpoint | lowercase |\n" in out
    assert "| sami | 0.88 [0.62, 1.00] |\n\n| flipped | sami |\n|---|---|\n| 1 | 72% |\n\n<!-- end -->" in out
    assert "```" not in out and "Contrast" not in out and "By principles" not in out and "steps" not in out


def test_an_excerpt_stops_at_its_until_line(root):
    spec = 'runs/q/report/report.md section="Experiment 1" lines="^\\|" until="^By principles" as=markdown'
    out = regenerate.regenerate(page(spec), "P")
    assert "| sami | 0.88 [0.62, 1.00] |\n\n<!-- end -->" in out and "flipped" not in out


def test_a_block_whose_run_is_missing_is_left_and_named(root):
    said = []
    text = page('runs/gone/report/report.md section="What this run shows"', "kept 0.5\n")
    assert regenerate.regenerate(text, "README.md", said.append) == text
    assert len(said) == 1 and said == ["README.md: a block left as it is: runs/gone/report/report.md is missing"]


def test_a_heading_or_line_pattern_that_matches_nothing_is_an_error(root):
    with pytest.raises(ValueError, match="no heading"):
        regenerate.regenerate(page('runs/q/report/report.md section="Nowhere"'), "P")
    with pytest.raises(ValueError, match="matches"):
        regenerate.regenerate(page('runs/q/report/report.md lines="^zzz"'), "P")


def test_stage_times_need_the_machine_and_come_with_its_matmul_rate(root):
    run = root / "runs" / "q"
    for name, folder, seconds in [("mtbench/data", "mtbench/data", 12.0), ("mtbench/sft", "mtbench/models/sft", 30.0)]:
        (run / folder).mkdir(parents=True)
        (run / folder / "stage.json").write_text(json.dumps({"stage": name, "seconds": seconds}))
    (run / "mtbench/data.stale-abc").mkdir()
    (run / "mtbench/data.stale-abc/stage.json").write_text(json.dumps({"stage": "mtbench/data", "seconds": 999.0}))
    said = []
    text = page("runs/q stages")
    assert regenerate.regenerate(text, "P", said.append) == text and "machine.json" in said[0]
    (run / "machine.json").write_text(
        json.dumps({"matmul_gflops": 198.4, "cpus": 2, "torch": "torch 2.13.0", "measured": "2026-12-04 05:00 UTC"})
    )
    out = regenerate.regenerate(text, "P", said.append)
    assert "mtbench/sft                0.5 min" in out and "all stages                 0.7 min" in out
    assert "matmul 198 GFLOP/s" in out and "999" not in out  # a folder moved aside is not this run's


def test_the_matmul_rate_is_a_plausible_number():
    assert 0.1 < regenerate.matmul_gflops(n=256, repeats=2) < 1e6


def test_every_block_in_the_docs_names_a_file_and_known_options():
    blocks = [m.group("spec") for p in regenerate.PAGES for m in regenerate.BLOCK.finditer(p.read_text())]
    assert len(blocks) >= 5, blocks
    for spec in blocks:
        target, options = regenerate.parse_spec(spec)
        assert target.startswith("runs/"), spec
        assert set(options) <= {"section", "lines", "until", "as", "stages"}, spec


def test_the_machine_is_recorded_after_a_run_and_not_again_until_a_stage_runs(root, monkeypatch):
    import os

    monkeypatch.setattr(regenerate, "matmul_gflops", lambda: 123.4)
    run = root / "runs" / "q"
    (run / "data").mkdir()
    (run / "data" / "stage.json").write_text(json.dumps({"stage": "data", "seconds": 6.0}))
    first = regenerate.record_machine(run, note="beside other jobs")
    assert first["matmul_gflops"] == 123.4 and first["note"] == "beside other jobs" and first["cpus"] >= 1
    assert json.loads((run / "machine.json").read_text()) == first
    assert regenerate.record_machine(run) is None  # a rerun that ran no stage keeps the run's machine
    later = (run / "machine.json").stat().st_mtime + 10
    os.utime(run / "data" / "stage.json", (later, later))
    assert regenerate.record_machine(run)["matmul_gflops"] == 123.4 and "note" not in json.loads(
        (run / "machine.json").read_text()
    )


MACHINE = {"matmul_gflops": 198.4, "cpus": 2, "torch": "torch 2.13.0", "measured": "2026-12-04 05:00 UTC"}


@pytest.fixture
def pages(root, monkeypatch):
    """Two pages: A quotes the report and the stage times of runs/q, B quotes one more line of the report (a
    heading only B names); runs/q has one finished stage and its machine."""
    run = root / "runs" / "q"
    (run / "data").mkdir()
    (run / "data" / "stage.json").write_text(json.dumps({"stage": "data", "seconds": 60.0}))
    (run / "machine.json").write_text(json.dumps(MACHINE))
    a = root / "A.md"
    a.write_text(page('runs/q/report/report.md section="What this run shows" lines="^- Math"') + page("runs/q stages"))
    b = root / "B.md"
    b.write_text(page('runs/q/report/report.md section="Training" lines="^\\|" as=markdown'))
    monkeypatch.setattr(regenerate, "PAGES", [a, b])
    return run, a, b


def _damage_report_heading(run):
    report = run / "report" / "report.md"
    report.write_text(report.read_text().replace("### Training", "### Steps"))


@pytest.mark.parametrize(
    "damage, named",
    [
        (_damage_report_heading, "runs/q/report/report.md: no heading 'Training'"),
        (lambda run: (run / "report" / "report.md").write_text(""), "runs/q/report/report.md: empty"),
        (lambda run: (run / "machine.json").write_text("{cpus: 2"), "runs/q/machine.json: not JSON"),
        (lambda run: (run / "data" / "stage.json").write_text("{}"), "runs/q/data/stage.json: no stage, seconds"),
        (lambda run: (run / "report" / "report.md").unlink(), "runs/q/report/report.md is missing, but runs/q has"),
    ],
    ids=["heading-only-the-second-page-quotes", "empty-report", "machine-not-json", "empty-stage", "report-missing"],
)
def test_a_block_that_cannot_be_rendered_writes_no_page_and_names_its_file(pages, capsys, damage, named):
    run, a, b = pages
    before = (a.read_text(), b.read_text())
    damage(run)
    assert regenerate.main([]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and named in err and "no page was written" in err, err
    assert (a.read_text(), b.read_text()) == before


def test_every_page_is_rewritten_when_every_block_renders(pages, capsys):
    _, a, b = pages
    assert regenerate.main([]) == 0
    assert (
        "- Math: base greedy accuracy 38% [18, 61]." in a.read_text()
        and "data                       1.0 min" in a.read_text()
    )
    assert "| sami | 32 |" in b.read_text()


def test_a_screenshot_is_left_as_it_is_where_its_page_is_missing(pages, capsys):
    assert regenerate.main([]) == 0
    out = capsys.readouterr().out
    for png in regenerate.SHOTS:
        assert f"{png}: left as it is" in out and not (regenerate.ROOT / png).exists()


@pytest.mark.browser
def test_a_screenshot_shows_its_page(root, capsys, monkeypatch):
    """The picture is the page as the browser draws it: a page whose top is a green bar over a red block gives
    those pixels there, and the selector's element alone is what a selector shot holds, not covered by the bar that
    sticks to the top of the window once the page is scrolled down to the element."""
    pytest.importorskip("playwright")
    from pathlib import Path

    if not Path("/usr/bin/chromium").is_file():
        pytest.skip("no /usr/bin/chromium (make test-browser installs it)")
    from PIL import Image

    html = root / "p.html"
    html.write_text(
        '<body style="margin:0"><div style="position:sticky;top:0;height:50px;background:#00ff00"></div>'
        '<div style="background:#ff0000;height:3000px"></div>'
        '<article class="q" style="background:#0000ff;width:200px;height:1500px"></article></body>'
    )
    monkeypatch.setattr(regenerate, "SHOTS", {"top.png": ("p.html", None), "q.png": ("p.html", "article.q")})
    regenerate.remake_shots()
    top, q = Image.open(root / "top.png").convert("RGB"), Image.open(root / "q.png").convert("RGB")
    assert top.getpixel((10, 10)) == (0, 255, 0) and top.getpixel((10, 350)) == (255, 0, 0)
    assert q.size == (200, 1500) and set(q.getdata()) == {(0, 0, 255)}


def test_a_screenshot_that_cannot_be_drawn_is_left_as_it_is_and_the_next_is_made(root, capsys, monkeypatch):
    """A page without the element a picture shows, or a browser that fails, is said in one line per picture; that
    picture stays as it was, the next one is still made, and the pages stay written (exit code 0)."""
    import sami.study.screenshot as shots

    (root / "p.html").write_text("<body>no questions here</body>")
    (root / "old.png").write_bytes(b"old picture")
    monkeypatch.setattr(regenerate, "SHOTS", {"old.png": ("p.html", "article.q"), "top.png": ("p.html", None)})
    monkeypatch.setattr(shots, "CHROMIUM", str(root / "p.html"))  # any file: the browser is faked below

    def fake(page, out, *, height, selector):
        if selector:
            raise RuntimeError(f"Locator.scroll_into_view_if_needed: Timeout 30000ms exceeded.\nwaiting for {selector}")
        Path(out).write_bytes(b"new picture")

    monkeypatch.setattr(shots, "screenshot", fake)
    regenerate.remake_shots()
    out = capsys.readouterr().out
    assert "old.png: left as it is (could not draw it from p.html: Locator.scroll_into_view_if_needed" in out
    assert "top.png: remade from p.html" in out
    assert (root / "old.png").read_bytes() == b"old picture" and (root / "top.png").read_bytes() == b"new picture"


@pytest.mark.browser
def test_a_page_without_the_selected_element_is_said_at_once_and_the_picture_stays(root):
    pytest.importorskip("playwright")
    from sami.core.errors import InputMissing
    from sami.study.screenshot import CHROMIUM, screenshot

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no {CHROMIUM} (make test-browser installs it)")
    (root / "p.html").write_text("<body>no questions here</body>")
    (root / "q.png").write_bytes(b"old picture")
    with pytest.raises(InputMissing, match=r"p\.html: no element matches 'article\.q'"):
        screenshot(root / "p.html", root / "q.png", selector="article.q")
    assert (root / "q.png").read_bytes() == b"old picture" and sorted(p.name for p in root.glob("*.png")) == ["q.png"]
