"""The ``transformers`` backend: batched generation with a local transformers model (the default kind)."""

from __future__ import annotations

import time

import torch

from sami.backends.base import BackendConfig, Completion, SamplingParams, cut_at_stop, in_order, register_backend
from sami.backends.next_token import local_next_token_probs_iter
from sami.backends.tools import Prompt, left_pad, progress_bar, prompt_ids
from sami.core.errors import ConfigError


def inference_dtype(dtype: str) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that has it, float32 otherwise."""
    if dtype == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, dtype)


def load_inference_model(name_or_path: str, *, revision: str | None = None, dtype: str = "auto"):
    """(model, tokenizer) in eval mode on the best device, loaded as trained (``sami.models.loading.load_trained``):
    an alias, hub id, model folder, run folder or TRL checkpoint; a LoRA adapter is merged into its chain."""
    from sami.models.loading import load_trained

    model, tokenizer = load_trained(name_or_path, dtype=inference_dtype(dtype), revision=revision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


class TransformersBackend:
    """Batched local generation with a transformers model (left padding, KV cache, stop strings).

    Greedy output does not depend on the batch: each prompt is generated as it would be alone (tested).
    Sampled output is reproducible for the same prompts, order and batch size (the generator is seeded per
    batch from ``params.seed`` and the batch's first prompt), but changes when batches are formed differently.
    """

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, name: str | None = None, revision=None):
        self.model = model
        self.tokenizer = tokenizer
        on_gpu = next(model.parameters()).device.type == "cuda"
        self.batch_size = batch_size or (32 if on_gpu else 8)
        self.name = name or getattr(model.config, "_name_or_path", "") or "in-memory model"
        self.revision = revision
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ConfigError("the tokenizer has neither a pad nor an eos token; generation needs one to pad")
        self.pad_id = pad
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        self.eos_ids = sorted({i for i in eos + [tokenizer.eos_token_id] if i is not None})

    def describe(self) -> dict:
        p = next(self.model.parameters())
        return {
            "kind": "transformers",
            "model": self.name,
            "revision": self.revision,
            "dtype": str(p.dtype).removeprefix("torch."),
            "device": p.device.type,
            "batch_size": self.batch_size,
        }

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt (``sami.backends.tools.prompt_ids``)."""
        return prompt_ids(self.tokenizer, prompt)

    def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None, progress=True):
        """(prompt index, ``CandidateProbs``) of the candidate tokens after each prompt + ``prefix``: one
        batched prefill, no generation (``sami.backends.next_token``)."""
        return local_next_token_probs_iter(self, prompts, prefix, candidates, desc=desc, progress=progress)

    def generate(self, prompts, params, *, desc=None, progress=True):
        return in_order(len(prompts), self.generate_iter(prompts, params, desc=desc, progress=progress))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        bar = progress_bar(len(prompts), desc, progress)
        tokens = 0
        start = time.perf_counter()
        try:
            for b in range(0, len(order), self.batch_size):
                batch = order[b : b + self.batch_size]
                results = self._generate_batch([encoded[i] for i in batch], params, seed_key=batch[0])
                for i, completions in zip(batch, results, strict=True):
                    tokens += sum(c.num_tokens or 0 for c in completions)
                    yield i, completions
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        finally:
            bar.close()

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, seed_key: int) -> list[list[Completion]]:
        device = next(self.model.parameters()).device
        input_ids, attention = left_pad(batch, self.pad_id)
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            use_cache=True,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
            torch.manual_seed(params.seed * 1_000_003 + seed_key)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        output = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        generated = output[:, input_ids.shape[1] :].tolist()
        results: list[list[Completion]] = []
        for row in range(len(batch)):
            completions = []
            for ids in generated[row * params.n : (row + 1) * params.n]:
                completions.append(self._completion(ids, params))
            results.append(completions)
        return results

    def _completion(self, ids: list[int], params: SamplingParams) -> Completion:
        ended = next((k for k, t in enumerate(ids) if t in self.eos_ids), None)
        if ended is not None:
            ids = ids[: ended + 1]
        text = self.tokenizer.decode(ids[:ended] if ended is not None else ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, params.stop)
        while ids and ids[-1] == self.pad_id and ended is None:
            ids = ids[:-1]  # a row that finished early inside a batch is padded after its stop string
        finished = ended is not None or stopped
        return Completion(text=text, finish_reason="stop" if finished else "length", num_tokens=len(ids))


@register_backend("transformers", verdict_probabilities="default", help="a local model (default)")
def _transformers(cfg: BackendConfig) -> TransformersBackend:
    model, tokenizer = load_inference_model(cfg.model, revision=cfg.revision, dtype=cfg.dtype)
    return TransformersBackend(model, tokenizer, batch_size=cfg.batch_size, name=cfg.model, revision=cfg.revision)
