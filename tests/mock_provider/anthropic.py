"""Anthropic Messages API replies (`/v1/messages`), JSON and SSE."""
from __future__ import annotations

from .reply import Json, Sse, data_event
from .usage import Counts, reply_words, reported_model


def _usage(c: Counts) -> dict:
    # Anthropic's input_tokens excludes cache reads and writes; the gateway
    # normalizes input = input_tokens + cache_read + cache_creation.
    return {
        "input_tokens": c.prompt - c.cached - c.cache_write,
        "cache_read_input_tokens": c.cached,
        "cache_creation_input_tokens": c.cache_write,
        "output_tokens": c.output,
    }


def messages(body: dict, headers: dict) -> Json | Sse:
    c = Counts(body, headers)
    model = reported_model(body.get("model") or "claude-3-5-haiku-latest")
    text = " ".join(reply_words(c.visible_output))
    usage = _usage(c)
    msg = {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
           "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
           "stop_sequence": None, "usage": usage}
    if not body.get("stream"):
        return Json(msg)
    start_usage = {**usage, "output_tokens": 1}
    events = [data_event({"type": "message_start",
                          "message": {**msg, "content": [], "stop_reason": None, "usage": start_usage}},
                         "message_start"),
              data_event({"type": "content_block_start", "index": 0,
                          "content_block": {"type": "text", "text": ""}}, "content_block_start")]
    for w in reply_words(c.visible_output):
        events.append(data_event({"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "text_delta", "text": w + " "}}, "content_block_delta"))
    events += [data_event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               data_event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": c.output}}, "message_delta"),
               data_event({"type": "message_stop"}, "message_stop")]
    return Sse(events)


def error(status: int, message: str) -> Json:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
            529: "overloaded_error"}
    return Json({"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}, status)
