"""What a provider handler returns: a JSON body or a list of SSE events."""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Json:
    body: dict
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass
class Sse:
    # Each item is one complete SSE event, e.g. "data: {...}\n\n"; the server
    # writes them one by one (optionally delayed) so the stream is observable.
    events: list[str]
    status: int = 200


def data_event(payload: dict | str, event: str | None = None) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n"
