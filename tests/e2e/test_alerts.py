"""Issue 19, alerts and signed webhooks through real Envoy and the real
collector (CONTRACTS §10): calls through Envoy drive a month budget across
50/70/90/100 %; a local receiver (http.server on a free port) gets each tier
exactly once with a valid `x-aispend-signature`; while the receiver is down
the deliveries wait in the outbox, across a collector restart, and all of
them arrive once it is back."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import SEARCH_KEY, chat_body, filter_config
from procs import ADMIN_TOKEN, READ_TOKEN, Collector, Envoy, call, wait_until

SECRET = "e2e-webhook-secret-0123456789"
LEVELS = ["critical", "hard", "info", "warning"]


class Receiver:
    """Records every POST; answers 503 while `down`."""

    def __init__(self):
        self.events: list[tuple[dict, bytes]] = []
        self.down = False
        self.refused = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if me.down:
                    me.refused += 1
                    self.send_response(503)
                else:
                    me.events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self) -> list[dict]:
        """Every event received, each signature checked."""
        out = []
        for headers, body in list(self.events):
            ts = headers["x-aispend-timestamp"]
            want = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-aispend-signature"], "v1=" + want), headers
            event = json.loads(body)
            assert event["id"] == headers["x-aispend-event-id"]
            out.append(event)
        return out

    def levels(self) -> list[str]:
        return sorted(e["level"] for e in self.verified())


def api(port: int, method: str, path: str, token: str, body=None):
    status, _, raw = call(method, port, path, body, {"authorization": f"Bearer {token}"})
    return status, (json.loads(raw) if raw else None)


def start_collector(tmp_path, port=None) -> Collector:
    c = Collector(tmp_path, port=port)
    c.proc.env["AISPEND_ALERT_INTERVAL_MS"] = "300"
    return c.start()


def test_each_tier_once_signed_and_nothing_lost_to_an_outage_or_a_restart(mock, tmp_path):
    receiver = Receiver()
    collector = start_collector(tmp_path)
    envoy = None
    try:
        cfg = filter_config()
        envoy = Envoy(tmp_path, upstream=mock.url, collector_port=collector.port, filter_config=cfg)
        envoy.start()
        port = collector.port

        status, hook = api(port, "POST", "/v1/webhooks", ADMIN_TOKEN,
                           {"url": f"http://127.0.0.1:{receiver.port}/hook", "secret": SECRET})
        assert status == 201, hook
        assert hook["secret"] == SECRET
        status, listed = api(port, "GET", "/v1/webhooks", ADMIN_TOKEN)
        assert status == 200 and SECRET not in json.dumps(listed)

        def chat():
            status = envoy.request("POST", "/v1/chat/completions", chat_body(50, max_tokens=50),
                                   {"authorization": f"Bearer {SEARCH_KEY}"})[0]
            assert status == 200
            return status

        def spend():
            return api(port, "GET", "/v1/budgets/b-search", READ_TOKEN)[1]["spend_usd"]

        # Learn what one call costs, then size the budget to 9.5 calls:
        # 5 calls = 53 %, 7 = 74 %, 9 = 95 %, 10 = 105 %.
        status, _ = api(port, "POST", "/v1/budgets", ADMIN_TOKEN,
                        {"id": "b-search", "scope": {"team": "search"}, "period": "month",
                         "amount_usd": 1000.0})
        assert status == 201
        chat()
        one = wait_until(lambda: spend() or None, 15, "the first call's cost")
        status, body = api(port, "PUT", "/v1/budgets/b-search", ADMIN_TOKEN,
                           {"scope": {"team": "search"}, "period": "month", "amount_usd": 9.5 * one})
        assert status == 200, body
        assert body["forecast_usd"] >= body["spend_usd"] > 0

        def drive_to(calls: int):
            for _ in range(calls - drive_to.done):
                chat()
            drive_to.done = calls
            wait_until(lambda: spend() >= calls * one * 0.999, 15, f"{calls} calls counted")
        drive_to.done = 1

        drive_to(5)
        wait_until(lambda: "info" in receiver.levels(), 15, "info at 50 %")
        drive_to(7)
        wait_until(lambda: "warning" in receiver.levels(), 15, "warning at 70 %")
        # The forecast (spend + 14-day burn × days left) may raise Critical
        # before 90 %: a leading indicator; it still fires once.
        receiver.down = True
        drive_to(9)
        drive_to(10)
        wait_until(lambda: receiver.refused >= 1, 15, "a delivery refused while the receiver is down")
        status, alerts = api(port, "GET", "/v1/alerts", READ_TOKEN)
        assert sorted(a["level"] for a in alerts["alerts"]) == LEVELS, alerts

        # Restart the collector while deliveries are pending: none is lost.
        collector.stop()
        collector.proc.forget()
        collector = start_collector(tmp_path, port=port)
        receiver.down = False
        wait_until(lambda: receiver.levels() == LEVELS, 30,
                   "every tier delivered once the receiver is back, across the restart")
        events = receiver.verified()
        assert len({e["id"] for e in events}) == 4
        assert all(e["event"] == "spend.alert" and e["budget_id"] == "b-search" for e in events)
        assert next(e for e in events if e["level"] == "hard")["spend_usd"] >= 9.5 * one * 0.999

        status, deliveries = api(port, "GET", f"/v1/webhooks/{hook['id']}/deliveries", ADMIN_TOKEN)
        assert status == 200
        assert sorted(d["state"] for d in deliveries["deliveries"]) == ["delivered"] * 4, deliveries
        assert max(d["attempts"] for d in deliveries["deliveries"]) >= 2, deliveries
        _, _, metrics = call("GET", port, "/metrics")
        assert b"aispend_webhook_outbox_depth 0\n" in metrics
        # Nothing more arrives: each tier exactly once.
        assert receiver.levels() == LEVELS
    finally:
        if envoy:
            envoy.stop()
            envoy.proc.forget()
        collector.stop()
        collector.proc.forget()
        receiver.server.shutdown()
