"""Deterministic token usage, so tests know the exact sums to expect.

Rules (the same for every provider):
- prompt tokens  = number of whitespace-separated words in all prompt text of the
  request (messages / input / system / contents, text parts only);
- output tokens  = the request's max tokens field if present, else DEFAULT_OUTPUT;
- cached, cache-write and reasoning tokens come from the request headers
  `x-mock-cached-tokens`, `x-mock-cache-write-tokens`, `x-mock-reasoning-tokens`
  (default 0). Reasoning tokens are *added* to the output, as providers bill them.

`expected_usage` gives the normalized fields of CONTRACTS §3 that the gateway must record.
"""
from __future__ import annotations

from typing import Any

DEFAULT_OUTPUT = 5

# The mock reports a dated snapshot for well-known aliases, like OpenAI does,
# so tests can check `model` vs `requested_model`.
MODEL_SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}


def reported_model(requested: str) -> str:
    return MODEL_SNAPSHOTS.get(requested, requested)


def _words(value: Any) -> int:
    """Words in every text found in a prompt structure (strings, parts, lists)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_image", "image"):
            return 0
        return sum(_words(value[k]) for k in ("content", "text", "parts", "input") if k in value)
    return 0


def prompt_words(body: dict) -> int:
    total = 0
    for key in ("messages", "input", "contents", "prompt"):
        total += _words(body.get(key))
    total += _words(body.get("system"))  # Anthropic
    total += _words(body.get("instructions"))  # Responses API
    total += _words((body.get("systemInstruction") or body.get("system_instruction") or {}))
    return total


def max_output(body: dict) -> int:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(body.get(key), int):
            return body[key]
    gen = body.get("generationConfig") or body.get("generation_config") or {}
    if isinstance(gen.get("maxOutputTokens"), int):
        return gen["maxOutputTokens"]
    return DEFAULT_OUTPUT


def _header_int(headers: dict, name: str) -> int:
    try:
        return max(0, int(headers.get(name, "0")))
    except ValueError:
        return 0


class Counts:
    """Token counts of one mock call, before provider-specific shaping."""

    def __init__(self, body: dict, headers: dict):
        self.prompt = prompt_words(body)
        self.cached = min(self.prompt, _header_int(headers, "x-mock-cached-tokens"))
        self.cache_write = min(self.prompt - self.cached, _header_int(headers, "x-mock-cache-write-tokens"))
        self.visible_output = max_output(body)
        self.reasoning = _header_int(headers, "x-mock-reasoning-tokens")
        self.output = self.visible_output + self.reasoning

    def normalized(self) -> dict:
        return {
            "input_tokens": self.prompt,
            "cached_input_tokens": self.cached,
            "cache_write_input_tokens": self.cache_write,
            "output_tokens": self.output,
            "reasoning_tokens": self.reasoning,
        }


def expected_usage(body: dict, headers: dict | None = None, operation: str | None = None) -> dict:
    """Normalized token fields the gateway should record for this request
    (embeddings bill only their input)."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    usage = Counts(body, lowered).normalized()
    if operation == "embeddings":
        usage.update(output_tokens=0, reasoning_tokens=0, cached_input_tokens=0, cache_write_input_tokens=0)
    return usage


def reply_words(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]
