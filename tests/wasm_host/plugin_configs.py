"""Plugin configs (plugin/CONFIG.md) and demo keys the plugin tests share."""

import hashlib

DEMO_KEY = "sk-aispend-demo-search"
OTHER_KEY = "sk-aispend-demo-growth"


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def plugin_config(profile, collector_port=9, **collector):
    """The smallest config of plugin/CONFIG.md for a profile: Envoy names a
    cluster, Kong a host:port (kong/README.md, dispatch_http_call)."""
    target = "aispend_collector" if profile == "envoy" else f"127.0.0.1:{collector_port}"
    return {
        "gateway": profile,
        "identity": {
            "keys": [
                {
                    "key_id": "demo-search",
                    "sha256": sha256(DEMO_KEY),
                    "tags": {"org": "acme", "team": "search", "project": "ranking",
                             "cost_center": "CC-1001", "environment": "prod"},
                },
                {
                    "key_id": "demo-growth",
                    "sha256": sha256(OTHER_KEY),
                    "status": "revoked",
                    "tags": {"org": "acme", "team": "growth"},
                },
            ]
        },
        "collector": {"cluster": target, "token": "demo-ingest-token",
                      "flush_interval_ms": 1000, **collector},
    }


def clusters(collector_port=9):
    return {"aispend_collector": f"127.0.0.1:{collector_port}"}
