"""LLM backends for synthetic data: a local transformers model, or any OpenAI-compatible server.

Both expose one call, `complete(messages, temperature=, max_tokens=, seed=) -> str`, so the
generator never knows whether Qwen2-72B runs behind vLLM or a toy model runs in-process.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.errors import HarnessError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Messages = list[dict[str, str]]


@runtime_checkable
class LLMBackend(Protocol):
    name: str  # the model name recorded in the data card

    def complete(self, messages: Messages, *, temperature: float, max_tokens: int, seed: int) -> str: ...


def chatml(messages: Messages) -> str:
    """Qwen's ChatML layout, used when a tokenizer ships no chat template (e.g. tiny-qwen2)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


class TransformersBackend:
    """A causal LM run in-process with seeded sampling (greedy when temperature is 0)."""

    kind = "transformers"

    def __init__(self, model: str, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from harness.backbones import resolve_path

        source = resolve_path(model)
        try:
            self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(source)
            # A folder saved from a bare `Qwen2Model` (tiny-qwen2) loads into the ForCausalLM class:
            # transformers maps the base weights and ties the LM head to the embeddings.
            self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(source, use_kernels=False).to(device)
        except OSError as exc:
            raise HarnessError(f"synth model {model!r} could not be loaded from {source!r}: {exc}") from None
        self.model.eval()
        self.name = model
        self.source = source
        self.device = device

    def _prompt_ids(self, messages: Messages) -> Any:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = chatml(messages)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)

    def complete(self, messages: Messages, *, temperature: float, max_tokens: int, seed: int) -> str:
        import torch

        input_ids = self._prompt_ids(messages)
        sampling = temperature > 0
        options: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": max_tokens}
        if sampling:
            options.update(temperature=temperature, top_p=1.0, top_k=0)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        # fork_rng: seed the sampler for this call only, leaving the caller's torch RNG untouched.
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad_id, **options
            )
        return self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)


RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAICompatibleBackend:
    """POST `{base_url}/v1/chat/completions` (vLLM, SGLang, TGI, llama.cpp, OpenAI, ...).

    Standard library only (urllib): one JSON request per call does not justify a dependency.
    Connection errors, timeouts, 408/429 and 5xx are retried with exponential backoff; any other
    HTTP error is a configuration problem and fails at once.
    """

    kind = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
    ) -> None:
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/chat/completions"
        self.name = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.http_retries = 0  # transient failures retried so far (reported in the data card)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        last_error = ""
        for attempt in range(self.max_attempts):
            if attempt:
                self.http_retries += 1
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                if exc.code not in RETRY_STATUS:
                    raise HarnessError(f"{self.url}: HTTP {exc.code} for model {self.name!r}: {detail}") from None
                last_error = f"HTTP {exc.code}: {detail}"
                continue
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                continue
            try:
                return json.loads(payload)
            except json.JSONDecodeError:
                raise HarnessError(f"{self.url}: the answer is not JSON: {payload[:200]!r}") from None
        raise HarnessError(f"{self.url}: no answer after {self.max_attempts} attempts (last: {last_error})")

    def complete(self, messages: Messages, *, temperature: float, max_tokens: int, seed: int) -> str:
        body = {
            "model": self.name,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        answer = self._post(body)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise HarnessError(f"{self.url}: not a chat-completion answer: {json.dumps(answer)[:300]}") from None
        return content if isinstance(content, str) else ""
