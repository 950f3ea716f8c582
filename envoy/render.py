#!/usr/bin/env python3
"""Render envoy/envoy.yaml.tmpl into a runnable Envoy config.

Used by `make run` (scripts/run.py), the end-to-end tests (tests/e2e) and the
gateway benchmark (benches/gateway), so all three run the same Envoy shape.

    python3 envoy/render.py --wasm target/wasm32-wasip1/release/aispend_plugin.wasm \
        --filter-config envoy/demo-filter-config.json > /tmp/envoy.yaml
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "envoy.yaml.tmpl"
DEFAULT_UPSTREAM = "http://127.0.0.1:18080"


def parse_upstream(url: str) -> tuple[str, int, bool]:
    """`http://host:port` or `https://host[:port]` -> (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upstream must be http://host:port or https://host, got {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return parts.hostname, port, tls


def _is_ip(host: str) -> bool:
    return all(p.isdigit() for p in host.split(".")) and host.count(".") == 3


def wasm_filter(wasm_path: str, filter_config: str, name: str = "aispend") -> dict:
    """The envoy.filters.http.wasm entry loading `wasm_path` with its JSON config."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter_config,
                },
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(Path(wasm_path).resolve())}},
                },
            },
        },
    }


def jwt_filter(jwks: str, issuer: str, audience: str | None = None) -> dict:
    """jwt_authn before aispend: verified claims land in dynamic metadata under
    `jwt_payload`; `allow_missing_or_failed` lets virtual keys (not JWTs) through
    to aispend, which then authenticates them itself."""
    provider = {
        "issuer": issuer,
        "local_jwks": {"inline_string": jwks},
        "payload_in_metadata": "jwt_payload",
        # forward: false (default) removes a verified JWT before the upstream.
        "forward": False,
    }
    if audience:
        provider["audiences"] = [audience]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"aispend_idp": provider},
            "rules": [
                {
                    "match": {"prefix": "/"},
                    "requires": {
                        "requires_any": {
                            "requirements": [
                                {"provider_name": "aispend_idp"},
                                {"allow_missing_or_failed": {}},
                            ]
                        }
                    },
                }
            ],
        },
    }


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def render(
    *,
    listen_port: int = 10000,
    admin_port: int = 9901,
    collector_port: int = 9090,
    upstream: str = DEFAULT_UPSTREAM,
    wasm_path: str | None = None,
    filter_config: str | dict | None = None,
    jwks: str | None = None,
    jwt_issuer: str = "https://idp.example.com",
) -> str:
    """Return the Envoy YAML. Without `wasm_path` no wasm filter is loaded (the
    benchmark's baseline)."""
    host, port, tls = parse_upstream(upstream)
    route: dict = {"cluster": "llm_upstream", "timeout": "0s"}
    filters: list[dict] = []
    if jwks:
        filters.append(jwt_filter(jwks, jwt_issuer))
    if wasm_path:
        if isinstance(filter_config, dict):
            filter_config = json.dumps(filter_config)
        filters.append(wasm_filter(wasm_path, filter_config or "{}"))
    filters.append(ROUTER)
    upstream_tls = ""
    if tls:
        # Real providers: TLS with SNI, and the Host header rewritten to the
        # provider's name (clients send Host: 127.0.0.1:10000).
        route["host_rewrite_literal"] = host
        upstream_tls = "transport_socket: " + json.dumps(
            {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": host,
                    "common_tls_context": {
                        "validation_context": {
                            "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}
                        }
                    },
                },
            }
        )
    return Template(TEMPLATE.read_text()).substitute(
        admin_port=admin_port,
        listen_port=listen_port,
        collector_port=collector_port,
        route=json.dumps(route),
        http_filters=json.dumps(filters),
        upstream_type="STATIC" if _is_ip(host) else "LOGICAL_DNS",
        upstream_host=host,
        upstream_port=port,
        upstream_tls=upstream_tls,
    )


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(env.get("AISPEND_PORT", 10000)))
    ap.add_argument("--admin-port", type=int, default=int(env.get("AISPEND_ADMIN_PORT", 9901)))
    ap.add_argument("--collector-port", type=int, default=int(env.get("AISPEND_COLLECTOR_PORT", 9090)))
    ap.add_argument("--upstream", default=env.get("AISPEND_UPSTREAM") or DEFAULT_UPSTREAM)
    ap.add_argument("--wasm", help="wasm module; omit for an Envoy without the filter")
    ap.add_argument("--filter-config", type=Path, default=HERE / "demo-filter-config.json")
    ap.add_argument("--jwks", type=Path, help="JWKS file: adds jwt_authn before aispend")
    ap.add_argument("-o", "--out", type=Path, help="output file (default: stdout)")
    args = ap.parse_args(argv)
    text = render(
        listen_port=args.port,
        admin_port=args.admin_port,
        collector_port=args.collector_port,
        upstream=args.upstream,
        wasm_path=args.wasm,
        filter_config=args.filter_config.read_text() if args.wasm else None,
        jwks=args.jwks.read_text() if args.jwks else None,
    )
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
