"""A real OpenAI-compatible HTTP server for tests, answering with a local backend's real generations.

``serve_openai(backend)`` starts it on 127.0.0.1 (a free port) in a thread and stops it on exit. Tests can
queue faults, consumed one per request: ``"429"`` or ``"500"`` (answer with that status and a short
``retry-after-ms``), ``("sleep", seconds)`` (answer only after sleeping, so that a client times out), or
``"html"`` (answer HTTP 200 with an HTML page, as a proxy in front of a server may).

A request asking for log-probs (``logprobs`` on /completions, ``logprobs`` and ``top_logprobs`` on
/chat/completions) is answered as a vLLM server answers it: the prompt rendered by the server (the chat
template; with vLLM's ``continue_final_message`` the last assistant message is continued), one forward pass
of the backend's model, one greedy token and the top log-probs of that position.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from sami.backends.base import SamplingParams


@dataclass
class ServerState:
    base_url: str = ""
    requests: list[dict] = field(default_factory=list)  # bodies of every request received, faults included
    faults: list = field(default_factory=list)


def _top_logprobs(backend, body: dict, chat: bool) -> list[tuple[str, float]]:
    """The next token's top log-probs (decoded token, log-prob), best first, as many as the body asks for
    (at least one: the generated token)."""
    tokenizer = backend.tokenizer
    if chat:
        continued = bool(body.get("continue_final_message"))
        text = tokenizer.apply_chat_template(
            body["messages"], tokenize=False, continue_final_message=continued, add_generation_prompt=not continued
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        k = body.get("top_logprobs") or 0
    else:
        ids = tokenizer(body["prompt"])["input_ids"]
        k = int(body["logprobs"])
    device = next(backend.model.parameters()).device
    with torch.inference_mode():
        logits = backend.model(torch.tensor([ids], device=device)).logits[0, -1].float()
    values, indices = torch.log_softmax(logits, -1).topk(max(k, 1))
    return [(tokenizer.decode([i]), v) for i, v in zip(indices.tolist(), values.tolist(), strict=True)]


def _logprob_choice(top: list[tuple[str, float]], k: int, chat: bool) -> dict:
    token, logprob = top[0]
    if chat:
        entry = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top[:k]]
        return {"message": {"role": "assistant", "content": token}, "logprobs": {"content": [entry]}}
    logprobs = {"tokens": [token], "token_logprobs": [logprob], "top_logprobs": [dict(top[:k])], "text_offset": [0]}
    return {"text": token, "logprobs": logprobs}


@contextmanager
def serve_openai(backend, faults=None):
    state = ServerState(faults=list(faults or []))
    generate_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.requests.append(body)
            fault = state.faults.pop(0) if state.faults else None
            if fault in ("429", "500"):
                error = {"error": {"message": f"injected {fault}", "type": "test", "code": int(fault)}}
                return self._send(int(fault), error, {"retry-after-ms": "20"})
            if fault == "html":
                page = b"<html><body>upstream busy</body></html>"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                return self.wfile.write(page)
            if isinstance(fault, tuple) and fault[0] == "sleep":
                time.sleep(fault[1])
            chat = self.path.endswith("/chat/completions")
            if not chat and not self.path.endswith("/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            params = SamplingParams(
                max_new_tokens=body.get("max_tokens", 16),
                temperature=body.get("temperature", 0.0),
                top_p=body.get("top_p", 1.0),
                n=body.get("n", 1),
                stop=tuple(body.get("stop") or ()),
                seed=body.get("seed", 0),
            )
            prompt = body["messages"] if chat else body["prompt"]
            if body.get("logprobs"):
                with generate_lock:
                    top = _top_logprobs(backend, body, chat)
                k = (body.get("top_logprobs") or 0) if chat else int(body["logprobs"])
                choice = {"index": 0, "finish_reason": "length", **_logprob_choice(top, k, chat)}
                return self._send(200, self._reply(body, chat, [choice], 1))
            with generate_lock:
                (completions,) = backend.generate([prompt], params)
            choices = []
            for i, c in enumerate(completions):
                choice = {"index": i, "finish_reason": c.finish_reason, "logprobs": None}
                if chat:
                    choice["message"] = {"role": "assistant", "content": c.text}
                else:
                    choice["text"] = c.text
                choices.append(choice)
            tokens = sum(c.num_tokens or 0 for c in completions)
            self._send(200, self._reply(body, chat, choices, tokens))

        def _reply(self, body: dict, chat: bool, choices: list, tokens: int) -> dict:
            return {
                "id": f"test-{len(state.requests)}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
            }

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
