"""Gemini `models/{m}:generateContent` and `:streamGenerateContent?alt=sse`."""
from __future__ import annotations

from .reply import Json, Sse, data_event
from .usage import Counts, reply_words, reported_model


def _usage(c: Counts, visible: int) -> dict:
    meta = {"promptTokenCount": c.prompt, "candidatesTokenCount": visible,
            "totalTokenCount": c.prompt + visible + c.reasoning}
    if c.cached:
        meta["cachedContentTokenCount"] = c.cached
    if c.reasoning:
        meta["thoughtsTokenCount"] = c.reasoning
    return meta


def _chunk(model: str, text: str, usage: dict, final: bool) -> dict:
    cand = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if final:
        cand["finishReason"] = "STOP"
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": "mock"}


def generate(model: str, body: dict, headers: dict, stream: bool) -> Json | Sse:
    c = Counts(body, headers)
    reported = reported_model(model)
    words = reply_words(c.visible_output)
    if not stream:
        return Json(_chunk(reported, " ".join(words), _usage(c, c.visible_output), True))
    # Gemini repeats a growing usageMetadata on every chunk; the last one is final.
    events = []
    for i, w in enumerate(words):
        last = i == len(words) - 1
        events.append(data_event(_chunk(reported, w + " ", _usage(c, i + 1), last)))
    if not words:
        events.append(data_event(_chunk(reported, "", _usage(c, 0), True)))
    return Sse(events)


def error(status: int, message: str) -> Json:
    names = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}
    return Json({"error": {"code": status, "message": message, "status": names.get(status, "INTERNAL")}}, status)
