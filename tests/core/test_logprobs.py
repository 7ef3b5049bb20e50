import pytest
import torch

from sami import batch_logprob_matrices, encode_query, logprob_matrix
from sami.core.tokens import QueryTokens

PROMPTS = [
    "Assistant System Instructions: 1. Be brief.\n\nHuman: How do plants drink?\n\nAssistant:",
    "Assistant System Instructions: 1. Explain in detail, kindly and with care.\n\n"
    "Human: How do plants drink?\n\nAssistant:",
    "Assistant System Instructions: 1. Answer in French.\n\nHuman: How do plants drink?\n\nAssistant:",
]
RESPONSES = [
    " Roots.",
    " Plants take up water through their roots, and it travels up the stem in thin tubes called xylem.",
    " Par les racines.",
]


def _queries(tokenizer):
    a = encode_query(tokenizer, PROMPTS, RESPONSES)
    b = encode_query(tokenizer, PROMPTS[::-1][:3], [RESPONSES[2] + " Voila.", RESPONSES[0], RESPONSES[1][:40]])
    return [a, b]


def _matrix_and_grads(model, queries, **kw):
    model.zero_grad()
    mats = batch_logprob_matrices(model, queries, **kw)
    (mats * torch.arange(1, mats.numel() + 1).view_as(mats)).sum().backward()  # weighted: every entry counts
    return mats.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_close(a, b):
    mats_a, grads_a = a
    mats_b, grads_b = b
    torch.testing.assert_close(mats_a, mats_b, rtol=1e-4, atol=1e-5)
    for name in grads_a:
        scale = grads_b[name].abs().max().clamp(min=1e-8)
        rel = (grads_a[name] - grads_b[name]).abs().max() / scale
        assert rel < 1e-4, f"{name}: relative gradient difference {rel:.2e}"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_shared_equals_naive(tokenizer, tiny_model, attn, padding_side):
    tiny_model.config._attn_implementation = attn
    queries = _queries(tokenizer)
    assert len({len(r) for q in queries for r in q.response_ids}) > 3  # responses of different lengths
    naive = _matrix_and_grads(
        tiny_model, queries, layout="naive", pad_token_id=tokenizer.pad_token_id, padding_side=padding_side
    )
    shared = _matrix_and_grads(tiny_model, queries, layout="shared", pad_token_id=tokenizer.pad_token_id)
    assert naive[0].shape == (2, 3, 3)
    _assert_close(shared, naive)


def test_matrix_entry_equals_direct_computation(tokenizer, tiny_model):
    """L[i, j] computed by hand from one unpadded forward pass of prompt_i + response_j."""
    (q,) = _queries(tokenizer)[:1]
    mats = batch_logprob_matrices(tiny_model, [q], layout="shared", pad_token_id=tokenizer.pad_token_id)[0]
    for i, j in [(0, 1), (2, 0), (1, 1)]:
        ids = torch.tensor([q.prompt_ids[i] + q.response_ids[j]])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(input_ids=ids).logits.float(), -1)[0]
        p = len(q.prompt_ids[i])
        expected = torch.stack([logp[t - 1, ids[0, t]] for t in range(p, ids.shape[1])]).mean()
        assert mats[i, j].item() == pytest.approx(expected.item(), abs=1e-5)


def test_batch_of_queries_equals_each_alone(tokenizer, tiny_model):
    queries = _queries(tokenizer)
    together = batch_logprob_matrices(tiny_model, queries, pad_token_id=tokenizer.pad_token_id)
    for b, q in enumerate(queries):
        alone = batch_logprob_matrices(tiny_model, [q], pad_token_id=tokenizer.pad_token_id)[0]
        torch.testing.assert_close(together[b], alone, rtol=1e-5, atol=1e-5)


def test_encode_query_joins_ids_and_scores_eos(tokenizer):
    q = encode_query(tokenizer, ["Human: hi\n\nAssistant:"] * 2, [" Hello there.", " Bye"])
    assert q.response_ids[0][-1] == tokenizer.eos_token_id
    assert list(q.response_ids[0][:-1]) == tokenizer(" Hello there.", add_special_tokens=False)["input_ids"]
    assert list(q.prompt_ids[0]) == tokenizer("Human: hi\n\nAssistant:")["input_ids"]


def test_truncation(tokenizer):
    long = " one two three four five six seven eight nine ten"
    q = encode_query(
        tokenizer, ["Human: count\n\nAssistant:"] * 2, [long, " ok"], max_prompt_tokens=3, max_response_tokens=4
    )
    assert len(q.response_ids[0]) == 4 and q.response_ids[0][-1] != tokenizer.eos_token_id  # cut: no EOS
    assert q.response_ids[1][-1] == tokenizer.eos_token_id  # short enough: closed by EOS
    full = tokenizer("Human: count\n\nAssistant:")["input_ids"]
    assert list(q.prompt_ids[0]) == full[:1] + full[-2:]  # start and end kept, middle dropped


def test_logprob_matrix_from_text(tokenizer, tiny_model):
    mat = logprob_matrix(tiny_model, tokenizer, PROMPTS[:2], RESPONSES[:2])
    assert mat.shape == (2, 2) and mat.dtype == torch.float32 and mat.requires_grad
    assert (mat < 0).all()
    naive = logprob_matrix(tiny_model, tokenizer, PROMPTS[:2], RESPONSES[:2], layout="naive")
    torch.testing.assert_close(mat, naive, rtol=1e-4, atol=1e-5)


def test_num_tokens():
    q = QueryTokens(((1, 2, 3), (4, 5)), ((6,), (7, 8)))
    assert q.num_tokens("naive") == 2 * 5 + 2 * 3
    assert q.num_tokens("shared") == 5 + 2 * 3


def test_rejects_bad_input(tiny_model):
    with pytest.raises(ValueError):
        QueryTokens(((1,),), ((2,),))
    with pytest.raises(ValueError):
        QueryTokens(((1,), (2,)), ((3,),))
    q2 = QueryTokens(((1,), (2,)), ((3,), (4,)))
    q3 = QueryTokens(((1,), (2,), (5,)), ((3,), (4,), (6,)))
    with pytest.raises(ValueError, match="same number of constitutions"):
        batch_logprob_matrices(tiny_model, [q2, q3])
    with pytest.raises(ValueError, match="unknown layout"):
        batch_logprob_matrices(tiny_model, [q2], layout="fast")


def test_token_logprobs_matches_log_softmax_including_gradients():
    from sami.core.logprobs import token_logprobs

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    # position 0 predicts several tokens and one (position, target) pair repeats; row 2 differs
    positions = torch.tensor([[0, 0, 2, 4, 0]] * 2 + [[1, 3, 3, 0, 2]])
    targets = torch.tensor([[3, 3, 7, 1, 9]] * 2 + [[10, 0, 0, 5, 5]])
    weights = torch.randn(3, 5, dtype=torch.float64)
    got = token_logprobs(logits, positions, targets)
    (got * weights).sum().backward()
    grad, logits.grad = logits.grad.clone(), None
    rows = torch.arange(3).unsqueeze(1).expand(3, 5)
    expected = torch.log_softmax(logits.float(), -1)[rows, positions, targets]
    (expected * weights).sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad, logits.grad, rtol=1e-5, atol=1e-6)


def test_shared_equals_naive_with_gradient_checkpointing(tokenizer, tiny_model):
    """Checkpointed layers recompute activations in the backward; the packed layout must survive that."""
    queries = _queries(tokenizer)
    plain = _matrix_and_grads(tiny_model, queries, layout="naive", pad_token_id=tokenizer.pad_token_id)
    from sami.models.loading import enable_activation_checkpointing

    enable_activation_checkpointing(tiny_model)
    tiny_model.train()
    checkpointed = _matrix_and_grads(tiny_model, queries, layout="shared", pad_token_id=tokenizer.pad_token_id)
    _assert_close(checkpointed, plain)


def test_chat_template_prompt_and_end_of_turn_on_the_embedded_tokenizer(embedded_tokenizer):
    from sami.data.templates import CHAT_TEMPLATE, build_prompt, response_end_token

    tokenizer = embedded_tokenizer

    prompt = build_prompt(CHAT_TEMPLATE, "1. Be brief.", "Hi?", tokenizer)
    assert prompt.startswith("<|im_start|>system\n1. Be brief.<|im_end|>") and prompt.endswith(
        "<|im_start|>assistant\n"
    )
    assert response_end_token(CHAT_TEMPLATE, tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")


class _ToyChatTokenizer:
    """Adds BOS itself, and ends an assistant turn with " <eot>", a special token that is not EOS."""

    bos_token, bos_token_id, eos_token_id = "<s>", 1, 2
    vocab = {"<s>": 1, "</s>": 2, "<eot>": 3, " ": 4}
    all_special_ids = [1, 2, 3]

    def __call__(self, text, add_special_tokens=True):
        ids = [1] if add_special_tokens else []
        for piece in text.replace("<s>", " <s> ").replace("<eot>", " <eot> ").split(" "):
            ids.append(self.vocab.get(piece, 10 + len(piece)) if piece else 4)
        return {"input_ids": ids}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "<s>" + "".join(f"[{m['role']}] {m['content']} <eot>" for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")


def test_bos_is_not_doubled_and_the_turn_closes_with_its_own_token():
    from sami.data.templates import CHAT_TEMPLATE, response_end_token

    tok = _ToyChatTokenizer()
    end = response_end_token(CHAT_TEMPLATE, tok)
    assert end == 3  # the special token after the space, not the space and not EOS
    q = encode_query(tok, ["<s>[user] hi <eot>[assistant]", "plain prompt"], ["a", "b"], end_token_id=end)
    assert q.prompt_ids[0].count(1) == 1  # the rendered template's BOS only
    assert q.prompt_ids[1][0] == 1  # a raw prompt gets the tokenizer's BOS
    assert q.response_ids[0][-1] == 3


class _PrefixTokenizer:
    """A SentencePiece-like tokenizer: every word gets a start marker, so " a" has a lone-space token."""

    bos_token, eos_token_id = None, 0

    def __call__(self, text, add_special_tokens=True):
        ids = [1] if text.startswith(" ") else []  # the lone "▁" a dummy-prefix tokenizer emits
        ids += [hash(w) % 1000 + 10 for w in text.split()]
        return {"input_ids": ids}


def test_dummy_prefix_tokenizers_get_no_lone_space_token():
    q = encode_query(_PrefixTokenizer(), ["p1", "p2"], [" Hello there", " Hi"])
    assert 1 not in q.response_ids[0] + q.response_ids[1]
    assert len(q.response_ids[0]) == 3  # two words and the end token


def test_sliding_window_models_refuse_the_shared_layout_past_the_window(tokenizer, tiny_model):
    tiny_model.config.sliding_window = 8
    q = encode_query(tokenizer, ["a b c d e f g h i j k"] * 2, [" x", " y"])
    with pytest.raises(ValueError, match="sliding window"):
        batch_logprob_matrices(tiny_model, [q], pad_token_id=tokenizer.pad_token_id)
    batch_logprob_matrices(tiny_model, [q], layout="naive", pad_token_id=tokenizer.pad_token_id)
