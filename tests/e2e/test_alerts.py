"""Issue 19, alerts and signed webhooks through real Envoy and the real
collector (CONTRACTS §10): calls through Envoy drive a month budget across
50/70/90/100 %; a local receiver (http.server on a free port) gets each tier
exactly once with a valid `x-aispend-signature`; while the receiver is down
the deliveries wait in the outbox, across a collector restart, and all of
them arrive once it is back. An anomaly (a day's spend of one team and model far above
its previous 30 days) reaches an https receiver whose certificate comes from a private
CA given to the collector as AISPEND_WEBHOOK_CA_FILE."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import procs
from helpers import SEARCH_KEY, chat_body, filter_config
from procs import ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, Collector, Envoy, call, wait_until

SECRET = procs.secret("e2e-webhook-secret-0123456789")
LEVELS = ["critical", "hard", "info", "warning"]


class Receiver:
    """Records every POST; answers 503 while `down`."""

    def __init__(self, tls: ssl.SSLContext | None = None):
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
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
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


def start_collector(tmp_path, port=None, env: dict | None = None) -> Collector:
    c = Collector(tmp_path, port=port)
    c.proc.env["AISPEND_ALERT_INTERVAL_MS"] = "300"
    c.proc.env.update(env or {})
    return c.start()


def private_ca(tmp_path) -> tuple[str, ssl.SSLContext]:
    """A CA (its PEM path) and a server TLS context with a certificate it signed
    for localhost and 127.0.0.1."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aispend e2e CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return str(ca_path), ctx


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


def test_an_anomaly_through_envoy_reaches_an_https_receiver_of_a_private_ca_once(mock, tmp_path):
    ca_path, tls = private_ca(tmp_path)
    receiver = Receiver(tls=tls)
    collector = start_collector(tmp_path, env={"AISPEND_WEBHOOK_CA_FILE": ca_path,
                                               "AISPEND_ANOMALY_MIN_USD": "0"})
    envoy = None
    try:
        envoy = Envoy(tmp_path, upstream=mock.url, collector_port=collector.port,
                      filter_config=filter_config())
        envoy.start()
        port = collector.port
        status, hook = api(port, "POST", "/v1/webhooks", ADMIN_TOKEN,
                           {"url": f"https://localhost:{receiver.port}/hook", "secret": SECRET})
        assert status == 201, hook

        def chat():
            status = envoy.request("POST", "/v1/chat/completions", chat_body(50, max_tokens=50),
                                   {"authorization": f"Bearer {SEARCH_KEY}"})[0]
            assert status == 200

        def today_rows():
            status, usage = api(port, "GET", "/v1/usage?group_by=team,model&from="
                                + dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT00:00:00Z"), READ_TOKEN)
            assert status == 200, usage
            return usage["rows"]

        chat()
        rows = wait_until(lambda: today_rows() or None, 15, "the first call counted")
        model = rows[0]["model"]
        # 30 quiet days before today for the same team and model, sent to the
        # collector directly: 1 or 2 input tokens a day.
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        history = [{
            "id": f"history-{d}", "ts": (today - dt.timedelta(days=d, hours=-12)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gateway": "envoy", "key_id": "history", "provider": "openai", "operation": "chat",
            "model": model, "status": 200, "input_tokens": 1 + d % 2, "cached_input_tokens": 0,
            "cache_write_input_tokens": 0, "output_tokens": 1, "reasoning_tokens": 0,
            "tags": {"org": "acme", "team": "search"}} for d in range(1, 31)]
        status, _, body = call("POST", port, "/v1/records", {"records": history},
                               {"authorization": f"Bearer {INGEST_TOKEN}"})
        assert status == 200 and json.loads(body)["rejected"] == [], body

        wait_until(lambda: receiver.events or None, 20, "the anomaly delivered over https")
        chat()
        chat()
        status, alerts = api(port, "GET", "/v1/alerts?level=critical", READ_TOKEN)
        assert status == 200
        anomalies = [a for a in alerts["alerts"] if a["kind"] == "anomaly"]
        assert len(anomalies) == 1, alerts
        a = anomalies[0]
        assert a["scope"] == {"team": "search", "model": model} and a["budget_id"] is None, a
        assert a["z_score"] > 3 and a["spend_usd"] > a["amount_usd"] > 0, a
        # More calls and evaluations (every 300 ms): the same day never fires again.
        wait_until(lambda: len(today_rows()) == 1 and today_rows()[0]["requests"] == 3, 15, "3 calls counted")
        time.sleep(1.5)
        events = receiver.verified()
        assert [e["id"] for e in events] == [a["id"]], events
        assert events[0]["kind"] == "anomaly" and events[0]["event"] == "spend.alert"
        status, deliveries = api(port, "GET", f"/v1/webhooks/{hook['id']}/deliveries", ADMIN_TOKEN)
        assert [d["state"] for d in deliveries["deliveries"]] == ["delivered"], deliveries
    finally:
        if envoy:
            envoy.stop()
            envoy.proc.forget()
        collector.stop()
        collector.proc.forget()
        receiver.server.shutdown()
