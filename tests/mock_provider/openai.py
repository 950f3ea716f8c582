"""OpenAI-compatible replies: chat completions (also Azure deployments),
Responses API and embeddings, JSON and SSE."""
from __future__ import annotations

import time

from .reply import Json, Sse, data_event
from .usage import Counts, reply_words, reported_model


def _chat_usage(c: Counts) -> dict:
    return {
        "prompt_tokens": c.prompt,
        "completion_tokens": c.output,
        "total_tokens": c.prompt + c.output,
        "prompt_tokens_details": {"cached_tokens": c.cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": c.reasoning, "audio_tokens": 0},
    }


def chat(body: dict, headers: dict, model_hint: str | None = None) -> Json | Sse:
    c = Counts(body, headers)
    model = reported_model(body.get("model") or model_hint or "gpt-4o-mini")
    rid, created = "chatcmpl-mock", int(time.time())
    words = reply_words(c.visible_output)
    if not body.get("stream"):
        return Json({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": " ".join(words)}}],
            "usage": _chat_usage(c),
            "system_fingerprint": "fp_mock",
        })
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = [data_event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    for w in words:
        events.append(data_event({**base, "choices": [{"index": 0, "delta": {"content": w + " "}}]}))
    events.append(data_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if include_usage:
        events.append(data_event({**base, "choices": [], "usage": _chat_usage(c)}))
    events.append(data_event("[DONE]"))
    return Sse(events)


def _responses_usage(c: Counts) -> dict:
    return {
        "input_tokens": c.prompt,
        "input_tokens_details": {"cached_tokens": c.cached},
        "output_tokens": c.output,
        "output_tokens_details": {"reasoning_tokens": c.reasoning},
        "total_tokens": c.prompt + c.output,
    }


def responses(body: dict, headers: dict) -> Json | Sse:
    c = Counts(body, headers)
    model = reported_model(body.get("model") or "gpt-4o-mini")
    text = " ".join(reply_words(c.visible_output))
    resp = {
        "id": "resp_mock", "object": "response", "created_at": int(time.time()),
        "status": "completed", "model": model,
        "output": [{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": _responses_usage(c),
    }
    if not body.get("stream"):
        return Json(resp)
    start = {**resp, "status": "in_progress", "output": [], "usage": None}
    events = [data_event({"type": "response.created", "response": start}, "response.created")]
    for w in reply_words(c.visible_output):
        events.append(data_event({"type": "response.output_text.delta", "item_id": "msg_mock",
                                  "output_index": 0, "content_index": 0, "delta": w + " "},
                                 "response.output_text.delta"))
    events.append(data_event({"type": "response.completed", "response": resp}, "response.completed"))
    return Sse(events)


def embeddings(body: dict, headers: dict) -> Json:
    c = Counts(body, headers)
    inputs = body.get("input")
    n = len(inputs) if isinstance(inputs, list) else 1
    return Json({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]} for i in range(n)],
        "model": reported_model(body.get("model") or "text-embedding-3-small"),
        "usage": {"prompt_tokens": c.prompt, "total_tokens": c.prompt},
    })


MODELS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]


def models(model_id: str | None) -> Json:
    """`GET /v1/models` (what the OpenAI SDK's `models.list()` reads) and
    `GET /v1/models/{id}`."""
    def one(m: str) -> dict:
        return {"id": m, "object": "model", "created": 1715367049, "owned_by": "mock"}
    if model_id is None:
        return Json({"object": "list", "data": [one(m) for m in MODELS]})
    if model_id in MODELS:
        return Json(one(model_id))
    return error(404, f"The model `{model_id}` does not exist")


def error(status: int, message: str) -> Json:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_exceeded"}
    return Json({"error": {"message": message, "type": kind.get(status, "server_error"),
                           "param": None, "code": None}}, status)
