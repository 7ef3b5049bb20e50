"""The page without a browser: the report's Markdown read into blocks, what the page holds of an imported
folder, text escaped by the template engine, and nothing that would be fetched from a network."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from sami.cli import main
from sami.study.page import inline, report_blocks
from tests.helpers import FASTCHAT, ROOT, write_jsonl


def test_the_report_markdown_becomes_headings_lists_tables_and_paragraphs():
    text = "\n".join(
        [
            "# Report: x",
            "",
            "Judge: `transformers` *paper* numbers.",
            "more of the same paragraph",
            "",
            "- one **bold**",
            "- two",
            "",
            "| pairing | n | hard |",
            "|---|---|---|",
            "| sami vs dpo | 16 | 84.0% [68, 93] |",
            "| dpo vs sft | 16 | 40.0% [20, 60] |",
            "",
            "![missing](figures/none.png)",
        ]
    )
    blocks = report_blocks(text, None)
    assert [b["kind"] for b in blocks] == ["heading", "paragraph", "list", "table"]  # a missing figure is left out
    assert blocks[0] == {"kind": "heading", "level": 2, "text": "Report: x"}
    assert blocks[1]["lines"][0] == [
        ("text", "Judge: "),
        ("code", "transformers"),
        ("text", " "),
        ("em", "paper"),
        ("text", " numbers."),
    ]
    assert len(blocks[1]["lines"]) == 2
    assert blocks[2]["items"] == [[("text", "one "), ("bold", "bold")], [("text", "two")]]
    table = blocks[3]
    assert [c[0][1] for c in table["header"]] == ["pairing", "n", "hard"]
    assert [[c[0][1] for c in row] for row in table["rows"]] == [
        ["sami vs dpo", "16", "84.0% [68, 93]"],
        ["dpo vs sft", "16", "40.0% [20, 60]"],
    ]


def test_inline_keeps_plain_text_whole():
    assert inline("50% [9, 91] (n=1)") == [("text", "50% [9, 91] (n=1)")]


@pytest.fixture
def imported(tmp_path, capsys):
    code = main(["eval", "import", *map(str, FASTCHAT), "--output-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return tmp_path, out


def test_an_import_writes_the_page_and_names_it(imported):
    folder, out = imported
    page = folder / "report" / "index.html"
    assert f"page: {page}" in out
    html = page.read_text()
    metrics = json.loads((folder / "mtbench" / "metrics.json").read_text())
    o = metrics["pairwise"]["gpt-4"]["alpha vs beta"]["overall"]
    row = re.search(r'<tr data-judge="gpt-4" data-pair="alpha vs beta">(.*?)</tr>', html, re.S).group(1)
    cells = dict(re.findall(r'<td data-field="(\w+)">([^<]*)</td>', row))
    assert {k: int(cells[k]) for k in ("n", "win", "tie", "loss", "unparseable")} == {
        k: o[k] for k in ("n", "win", "tie", "loss", "unparseable")
    }
    assert cells["hard"].startswith(f"{100 * o['hard_win_rate']['value']:.1f}%")
    assert "Judgment. [[A]]" in html  # the judge's own text of a verdict


def test_view_writes_the_same_page_from_the_stored_files(imported, capsys):
    folder, _ = imported
    page = folder / "report" / "index.html"
    first = page.read_text()
    page.unlink()
    for target in (folder, folder / "mtbench"):  # the evaluation's output_dir, or its suite folder
        assert main(["view", str(target)]) == 0
        out = capsys.readouterr().out
        written = target / "report" / "index.html"
        assert f"page: {written}" in out
        strip = lambda html: re.sub(r"Page made [^ ]+", "", html)  # noqa: E731
        assert strip(written.read_text()).replace(str(target), str(folder)) == strip(first)


def test_view_reads_an_evaluation_config_an_older_version_wrote(imported, capsys):
    """An evaluation folder whose config.yaml still names ``mtbench.phrasing`` by its old name ``side`` (as the
    previous layout wrote it) gets the same page as today's."""
    import yaml

    folder, _ = imported
    path = folder / "mtbench" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["mtbench"]["side"] = data["mtbench"].pop("phrasing")
    path.write_text(yaml.safe_dump(data))
    page = folder / "report" / "index.html"
    first = page.read_text()
    assert main(["view", str(folder)]) == 0, capsys.readouterr().err
    strip = lambda html: re.sub(r"Page made [^ ]+", "", html)  # noqa: E731
    assert strip(page.read_text()) == strip(first)


def test_view_refuses_a_folder_with_nothing_to_show(tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    assert "neither a run folder" in capsys.readouterr().err


def test_text_is_escaped_and_nothing_is_fetched(tmp_path, capsys):
    """An answer holding markup is shown as text, never run; no element of the page points at a network."""
    answers = write_jsonl(
        tmp_path / "answers.jsonl",
        [
            {
                "question_id": 1,
                "question": "Say hi",
                "model": "alpha",
                "response": "<script>alert('x')</script> & <b>hi</b>",
            },
            {"question_id": 1, "question": "Say hi", "model": "beta", "response": "see https://example.org/img.png"},
        ],
    )
    assert main(["eval", "import", str(answers), "--output-dir", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;hi&lt;/b&gt;" in html
    assert "<script>alert" not in html and "<b>hi" not in html
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", html)
    assert "see https://example.org/img.png" in html  # as text only


def test_view_serves_the_page_on_localhost_until_interrupted(imported):
    """``sami view --serve`` prints the page's path, then the address it serves on; the page comes back from there
    byte for byte, and an interrupt stops it with exit code 0."""
    folder, _ = imported
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [sys.executable, "-m", "sami.cli", "view", str(folder), "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches it as at a terminal, also when the tests run as a background job (which ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert server.stdout.readline().strip() == f"page: {folder / 'report' / 'index.html'}"
        address = re.search(r"http://127\.0\.0\.1:\d+/index\.html", server.stdout.readline()).group(0)
        with urllib.request.urlopen(address, timeout=30) as response:
            assert response.read() == (folder / "report" / "index.html").read_bytes()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()


def test_a_grading_judges_rating_and_text_stand_under_each_answer(imported):
    """A ``single`` judge's stored 1-10 ratings (one file per model) appear under the answers they rate."""
    from sami.core.config import from_dict, load_yaml
    from sami.eval.config import EvalConfig
    from sami.eval.run import compute
    from sami.study.view import write_eval_page

    folder, _ = imported
    root = folder / "mtbench"
    (root / "judgments" / "single").mkdir()
    for name, rating in (("alpha", 7), ("beta", None)):
        write_jsonl(
            root / "judgments" / "single" / f"{name}.jsonl",
            [
                {
                    "question_id": 81,
                    "category": "writing",
                    "turn": 1,
                    "rating": rating,
                    "raw": f"{name} gets [[{rating}]]",
                },
            ],
        )
    cfg = from_dict(EvalConfig, load_yaml(root / "config.yaml"))
    cfg.mtbench.judges = ["single"]
    page = write_eval_page(folder, {"mtbench": cfg}, {"mtbench": compute("mtbench", cfg)})
    html = page.read_text()
    card = html.split('data-qid="81"')[1].split("</article>")[0]
    assert "<strong>single</strong> rates it 7" in card and "alpha gets [[7]]" in card
    assert "<strong>single</strong> rates it (unparseable)" in card and "beta gets [[None]]" in card
    assert html.count("rates it") == 2  # question 81's first turn only


def test_view_reads_a_line_being_written_without_cutting_it_or_writing_beside_it(imported, capsys):
    """``sami view`` holds no lock: a stage may be appending to the files it reads. An unfinished last line (a
    write still going on) is left out of the page, and no stored file is cut or completed."""
    folder, _ = imported
    stored = sorted(p for p in (folder / "mtbench").rglob("*.jsonl"))
    torn, whole = stored[0], stored[-1]
    torn.write_bytes(torn.read_bytes() + b'{"question_id": 8')  # a record half written
    whole.write_bytes(whole.read_bytes().rstrip(b"\n"))  # a complete record whose newline is still to come
    before = {p: p.read_bytes() for p in (folder / "mtbench").rglob("*") if p.is_file()}
    assert main(["view", str(folder)]) == 0, capsys.readouterr().err
    assert {p: p.read_bytes() for p in (folder / "mtbench").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("port", ["taken", "70000", "-1", "8000 without --serve"])
def test_view_refuses_a_port_it_cannot_have_before_it_writes_the_page(imported, capsys, port):
    """A port in use or out of range, or one given without ``--serve`` (which would serve nothing), is one line
    naming ``--port`` (exit code 2), and the folder keeps its page as it was (none written where there was none)."""
    import socket

    folder, _ = imported
    page = folder / "report" / "index.html"
    page.unlink()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        number = str(holder.getsockname()[1]) if port == "taken" else port.split()[0]
        serve = [] if "without" in port else ["--serve"]
        assert main(["view", str(folder), *serve, "--port", number]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sami: error: --port") and "debug" not in err and len(err.strip().splitlines()) == 1
    assert not page.exists()


@pytest.mark.parametrize("given", ["missing", "a file", "a training run", "a study of a run"])
def test_view_of_a_folder_it_has_no_page_for_says_what_the_folder_is(tmp_path, capsys, given):
    """One line (exit code 2) that says what was given and where the page is, instead of calling a training
    run's config an experiment config with two dozen unknown keys."""
    target = {
        "missing": tmp_path / "nope",
        "a file": tmp_path / "f.txt",
        "a training run": tmp_path / "run",
        "a study of a run": tmp_path / "study",
    }[given]
    (tmp_path / "f.txt").write_text("hi\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("method: sami\nmax_steps: 1\n")
    (tmp_path / "study" / "eval" / "mi").mkdir(parents=True)
    (tmp_path / "study" / "eval" / "mi" / "config.yaml").write_text("models: {base: m}\n")
    assert main(["view", str(target)]) == 2
    err = capsys.readouterr().err
    expected = {
        "missing": f"no such folder: {target}",
        "a file": f"{target} is a file;",
        "a training run": f"{target} is a training run (sami train)",
        "a study of a run": f"{target} is one study of a run; view the run ({tmp_path})",
    }[given]
    assert err.startswith(f"sami: error: {expected}") and len(err.strip().splitlines()) == 1, err
    assert not (target / "report").exists()


def test_two_writers_of_one_page_each_leave_a_whole_page(imported, monkeypatch, capsys):
    """``sami view`` may write a run's page while the run's report stage writes it: a second writer that finishes
    between the first one's write and its rename leaves both pages whole and no temporary file behind."""
    from pathlib import Path

    folder, _ = imported
    replace, nested = Path.replace, []

    def replace_after_another_writer(self, target):
        if not nested:
            nested.append(True)
            assert main(["view", str(folder)]) == 0
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", replace_after_another_writer)
    assert main(["view", str(folder)]) == 0, capsys.readouterr().err
    page = folder / "report" / "index.html"
    assert page.read_text().rstrip().endswith("</html>") and sorted(p.name for p in page.parent.iterdir()) == [
        "index.html"
    ]
