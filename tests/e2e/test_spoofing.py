"""Issue 23: a client header that some framework behind the gateway would read
as an aispend tag or identity never reaches the upstream with the client's
value, in any spelling. Requests are written byte for byte on a socket (no
client library normalises them); the mock provider shows what arrived."""
import json
import re
import socket

import pytest

import procs
from helpers import SEARCH_KEY, SEARCH_TAGS, Stack, chat_body, filter_config

# What the filter sets, by header: any other x-aispend-ish name upstream is a leak.
EXPECTED = {f"x-aispend-{k.replace('_', '-')}": v for k, v in SEARCH_TAGS.items()}
EXPECTED["x-aispend-key-id"] = "demo-search"

# (header line as sent, what it tries)
FORMS = [
    ("X-AISPEND-TEAM: evil-upper", "upper case"),
    ("X-Aispend-Org: evil-title", "title case"),
    ("x-aispend-project: evil-1\r\nX-Aispend-Project: evil-2", "repeated, two cases"),
    ("x-aispend-environment:    evil-padded   ", "padded value"),
    ("x-aispend-cost-center:\tevil-tab", "tab-padded value"),
    ("x_aispend_team: evil-underscore", "_ for - (CGI/WSGI/Rack/PHP/nginx)"),
    ("X_AISPEND_COST_CENTER: evil-underscore-upper", "_ for -, upper case"),
    ("x-aispend_project: evil-mixed", "mixed _ and -"),
    ("x.aispend.team: evil-dot", ". for - (PHP)"),
    ("x-aispend-key-id: evil-key", "identity"),
    ("X_Aispend_Key_Id: evil-key-underscore", "identity, _ for -"),
    ("x-aispend-request-id: 00000000000000000000000000000000", "request id"),
    ("x-aispend-signature: t=1,kid=k,v1=00", "signature"),
    ("x-aispend-whatever: evil-unknown", "unknown aispend header"),
]
# Malformed names: Envoy's codec refuses the request; nothing goes upstream.
REFUSED = [
    ("X-Aispend-Team : evil-space-before-colon", "space before the colon"),
    ("x-aispend-team\t: evil-tab-before-colon", "tab before the colon"),
]


def fold(name: str) -> str:
    return re.sub(r"[_.]", "-", name.lower())


def raw_chat(port: int, header_lines: str) -> int:
    body = json.dumps(chat_body(2)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {SEARCH_KEY}\r\nContent-Type: application/json\r\n"
            f"{header_lines}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def assert_clean(request: dict):
    """The upstream's view: each aispend spelling folds to a header the filter
    set, spelled as the filter spells it, once, with the filter's value."""
    seen = request["header_list"]
    assert not [(n, v) for n, v in seen if "evil" in v or v == "0" * 32], seen
    aispend = [(n, v) for n, v in seen if fold(n).startswith("x-aispend-")]
    names = [n for n, _ in aispend]
    assert sorted(names) == sorted([*EXPECTED, "x-aispend-request-id"]), aispend
    for name, value in aispend:
        if name in EXPECTED:
            assert value == EXPECTED[name], (name, value)


@pytest.fixture(scope="module", params=["DROP_HEADER", "ALLOW"])
def gateway(request, mock, tmp_path_factory):
    """Envoy as the examples configure it (underscored names dropped), and
    with Envoy's default (ALLOW): then the filter alone strips them."""
    tmp = tmp_path_factory.mktemp(f"spoof-{request.param}")
    collector = procs.Collector(tmp)
    collector.start()
    envoy = procs.Envoy(tmp, upstream=mock.url, collector_port=collector.port,
                        filter_config=filter_config())
    text = envoy.config_path.read_text()
    assert "headers_with_underscores_action: DROP_HEADER" in text
    envoy.config_path.write_text(text.replace("DROP_HEADER", request.param))
    try:
        envoy.start()
        yield Stack(mock, collector, envoy)
    finally:
        envoy.stop()
        collector.stop()


@pytest.mark.parametrize("line,what", FORMS, ids=[w for _, w in FORMS])
def test_each_spelling_is_stripped(gateway, line, what):
    gateway.mock.clear()
    assert raw_chat(gateway.envoy.port, line) == 200, what
    seen = gateway.mock.requests()
    assert len(seen) == 1
    assert_clean(seen[0])


def test_all_spellings_at_once(gateway):
    gateway.mock.clear()
    assert raw_chat(gateway.envoy.port, "\r\n".join(line for line, _ in FORMS)) == 200
    assert_clean(gateway.mock.requests()[0])


@pytest.mark.parametrize("line,what", REFUSED, ids=[w for _, w in REFUSED])
def test_malformed_names_never_reach_the_upstream(gateway, line, what):
    gateway.mock.clear()
    assert raw_chat(gateway.envoy.port, line) == 400, what
    assert gateway.mock.requests() == []


def test_reject_mode_refuses_every_spelling_that_reaches_the_filter(stack_factory):
    s = stack_factory(filter_config(tags={"on_conflict": "reject"}))
    for line in ["X-AISPEND-TEAM: evil", "x.aispend.team: evil", "x-aispend-key-id: evil"]:
        assert raw_chat(s.envoy.port, line) == 400, line
    # Underscored names never reach the filter: the example config drops them.
    assert raw_chat(s.envoy.port, "x_aispend_team: evil") == 200
    assert all("evil" not in v for r in s.mock.requests() for _, v in r["header_list"])
