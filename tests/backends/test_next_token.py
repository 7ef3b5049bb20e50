"""Verdict probabilities: the candidates' next-token probabilities after a prompt and an assistant prefix,
from a local model (batched prefill) and from an OpenAI-compatible endpoint's top log-probs."""

import math

import pytest
import torch

from sami.backends.base import BackendConfig
from sami.backends.next_token import CandidateProbs, from_top_logprobs
from sami.backends.openai_backend import OpenAIBackend
from sami.backends.transformers_backend import TransformersBackend
from tests.helpers import tiny_llama
from tests.openai_server import serve_openai

PREFIX = "My final verdict: [["
LETTERS = ["A", "B", "C"]


def verdict_model(tokenizer):
    """A tiny random Llama that, after any text, puts most of its probability on A, B and C, in proportions
    that depend on the text. So the letters are always among an endpoint's top 20 log-probs.

    Every token embedding gets a constant 4.0 in dimension 0, which the final norm keeps as a positive
    component h0; the (untied) output rows give the letters +4 h0 plus a random direction (std 0.5), every
    other token -4 h0: about 90% of the probability on the letters, and each letter above every other token.
    The other weights are drawn wide (std 0.2) so that the context moves the letters' proportions.
    """
    model = tiny_llama(len(tokenizer), init_std=0.2, tied=False)
    letters = [tokenizer.convert_tokens_to_ids(c) for c in LETTERS]
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 4.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = -4.0
        model.lm_head.weight[letters] = 0.5 * torch.randn(3, model.config.hidden_size)
        model.lm_head.weight[letters, 0] = 4.0
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def _judge_prompts(n: int) -> list[list[dict]]:
    return [
        [
            {"role": "system", "content": "Pick the better answer; reply [[A]], [[B]] or [[C]]."},
            {"role": "user", "content": f"Question {k}? " + "Answer A: yes. " * (k % 3) + "Answer B: no. " * k},
        ]
        for k in range(n)
    ]


def _local(backend, prompts, prefix=PREFIX) -> list[CandidateProbs]:
    return [r for _, r in sorted(backend.next_token_probs_iter(prompts, prefix, LETTERS, progress=False))]


def test_probabilities_are_the_softmax_of_the_logits_at_the_verdict_position(lively_model, tokenizer):
    """Independently: render the chat prompt with its generation prompt, append the prefix, run the model on
    the one sequence and take exp(logit) of each letter over the sum of the three (float64)."""
    prompts = _judge_prompts(3)
    results = _local(TransformersBackend(lively_model, tokenizer, batch_size=2), prompts)
    letters = [tokenizer.convert_tokens_to_ids(c) for c in LETTERS]
    for prompt, result in zip(prompts, results, strict=True):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) + PREFIX
        assert text.endswith("<|im_start|>assistant\n" + PREFIX)
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            logits = lively_model(torch.tensor([ids])).logits[0, -1].double()
        expected = [math.exp(logits[i]) for i in letters]
        total = sum(math.exp(v) for v in logits.tolist())
        assert result.probs == pytest.approx([e / sum(expected) for e in expected], abs=1e-5)
        assert sum(result.probs) == pytest.approx(1.0, abs=1e-6)
        assert result.mass == pytest.approx(sum(expected) / total, rel=1e-4)
    assert len({r.probs for r in results}) == 3  # the prompts differ, so do their verdicts


def test_batched_prefill_equals_one_prompt_at_a_time(lively_model, tokenizer):
    prompts = _judge_prompts(5)  # different lengths, so batches are left-padded
    alone = _local(TransformersBackend(lively_model, tokenizer, batch_size=1), prompts)
    batched = _local(TransformersBackend(lively_model, tokenizer, batch_size=5), prompts)
    for a, b in zip(alone, batched, strict=True):
        assert b.probs == pytest.approx(a.probs, abs=1e-5) and b.mass == pytest.approx(a.mass, rel=1e-4)


def test_a_candidate_must_be_one_token(tiny_model, tokenizer):
    backend = TransformersBackend(tiny_model, tokenizer)
    with pytest.raises(ValueError, match="must be one"):
        list(backend.next_token_probs_iter(["x"], PREFIX, ["A", "hello world"], progress=False))


def test_endpoint_top_logprobs_give_the_local_probabilities(tmp_path, tokenizer):
    """The test server renders the prompt as vLLM does (continue_final_message), runs the same model and
    returns the top 20 log-probs; renormalised over A, B, C they equal the local prefill's."""
    model = verdict_model(tokenizer)
    local_backend = TransformersBackend(model, tokenizer, batch_size=4)
    chats = _judge_prompts(4)
    texts = [f"Q: question {k}\nA:" for k in range(2)]
    with serve_openai(TransformersBackend(model, tokenizer)) as server:
        cfg = BackendConfig(kind="openai", model="judge", base_url=server.base_url, cache_dir=str(tmp_path / "c"))
        remote = OpenAIBackend(cfg)
        for prompts in (chats, texts):  # chat endpoint, then raw-text completions endpoint
            got = _local(remote, prompts)
            for r, want in zip(got, _local(local_backend, prompts), strict=True):
                assert r.probs == pytest.approx(want.probs, abs=1e-5)
                assert r.mass == pytest.approx(want.mass, rel=1e-4)
        bodies = server.requests
        assert len(bodies) == 6 and all(b["max_tokens"] == 1 for b in bodies)
        chat_body = bodies[0] if "messages" in bodies[0] else next(b for b in bodies if "messages" in b)
        assert chat_body["messages"][-1] == {"role": "assistant", "content": PREFIX}
        assert chat_body["continue_final_message"] is True and chat_body["top_logprobs"] == 20
        again = OpenAIBackend(cfg)  # a new client over the same cache sends nothing
        assert _local(again, chats) == _local(remote, chats) and again.requests_sent == 0 and len(bodies) == 6


def test_candidates_missing_from_the_top_logprobs_count_zero():
    top = [("A", math.log(0.5)), ("the", math.log(0.3)), ("C", math.log(0.1))]
    result = from_top_logprobs(top, LETTERS)
    assert result.probs == pytest.approx((0.5 / 0.6, 0.0, 0.1 / 0.6)) and result.mass == pytest.approx(0.6)
    assert from_top_logprobs([("the", -0.1)], LETTERS) == CandidateProbs(None, None)
