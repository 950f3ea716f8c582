"""Request headers as each host keeps them, and what its proxy then sends
upstream. The filter's view (get_header_map_pairs) and the upstream's view
differ in Kong's engine; tests read both.

Envoy (`EnvoyRequestHeaders`): one header map; what the filter sees is what
the router forwards. Replacing the map clears every header, pseudo-headers
included (Envoy's `Context::setHeaderMapPairs` removes every key first).

Kong (`NginxRequestHeaders`): nginx's `r->headers_in.headers` list as
ngx_wasm_module (commit 9136e463, the one Kong 3.9 pins) edits it, and the
request line `proxy_pass` builds. Read from the engine's sources:
- src/http/ngx_http_wasm_headers.c, `ngx_http_wasm_set_header_helper`:
  removing a header sets its `hash` to 0 and leaves it in the list; setting
  one overwrites the first live match in place and clears (hash = 0) the
  later ones; a name with no live match is appended. Adding always appends.
- `ngx_http_wasm_set_builtin_header_handler` (Authorization, Host,
  Content-Length, ... the table in ngx_http_wasm_headers_request.c): these
  edit only the entry nginx's parser pointed `headers_in.<name>` at; other
  copies of the same name are left as they are.
- `ngx_http_wasm_clear_headers_helper` + `ngx_proxy_wasm_maps_set_all`
  (proxy_set_header_map_pairs): every live header is cleared, then the new
  pairs are set one by one; `:scheme` and `:authority` have no setter, so
  the first of them logs `cannot set read-only ":scheme" header` and stops
  the loop. Cleared entries do not match a later set (hash 0), so a header
  kept in the new map is appended next to its cleared original.
- nginx's `ngx_http_proxy_create_request` forwards every entry of the list
  whose name is not one proxy_pass sets itself; it never looks at `hash == 0`,
  and a cleared entry's hash 0 does not find its name in proxy_pass's own
  set either. So a cleared header still reaches the upstream, and a cleared
  `Host` goes out next to the one nginx writes.
- The request line: Kong's template proxies to
  `$upstream_scheme://kong_upstream$upstream_uri`, and Kong's Lua builds
  `$upstream_uri` (route path + `?` + `$args`) in `runloop.access.after`,
  which runs before ngx_wasm_module's access step (kong/init.lua,
  runloop/handler.lua; ngx_http_wasm_module.c). So neither a `:path` edit
  (`ngx_proxy_wasm_maps_set_path` rewrites `r->uri`/`r->args`) nor the
  `request.query` property (`$args`) reaches the upstream; only setting the
  `ngx.upstream_uri` property does. (A plain nginx `proxy_pass` without a
  URI part would send `r->unparsed_uri` instead, which `$args` does change —
  seen in the engine built from these sources; Kong's line is modelled here.)
"""

# Headers ngx_wasm_module edits through headers_in.<name> (builtin handlers).
NGINX_BUILTIN = frozenset({
    "host", "connection", "if-modified-since", "if-unmodified-since", "if-match",
    "if-none-match", "user-agent", "referer", "content-length", "content-type", "range",
    "if-range", "transfer-encoding", "expect", "upgrade", "accept-encoding", "via",
    "authorization", "keep-alive", "x-real-ip", "depth", "destination", "overwrite", "date",
})

# Headers proxy_pass writes itself (nginx's defaults and Kong's template):
# a live client copy is replaced, a cleared one is sent as well.
NGINX_PROXY_OWN = frozenset({
    "host", "connection", "content-length", "transfer-encoding", "te", "keep-alive",
    "expect", "upgrade", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-forwarded-port", "x-real-ip",
})

PSEUDO = (":method", ":path", ":authority", ":scheme")


class ReadOnlyHeader(Exception):
    """A map write reached a pseudo-header the host cannot set."""


class EnvoyRequestHeaders:
    def __init__(self, pairs):
        self._pairs = [(n, bytes(v)) for n, v in pairs]

    def pairs(self):
        return list(self._pairs)

    def values(self, name):
        return [v for n, v in self._pairs if n == name]

    def set(self, name, value, log=None):
        # HeaderMap::setCopy: every value of the name replaced by one.
        self._pairs = [(n, v) for n, v in self._pairs if n != name] + [(name, value)]

    def add(self, name, value, log=None):
        self._pairs.append((name, value))

    def remove(self, name):
        self._pairs = [(n, v) for n, v in self._pairs if n != name]

    def set_all(self, pairs, log):
        self._pairs = [(n.lower(), v) for n, v in pairs]

    def set_query(self, query):
        return False

    def set_upstream_uri(self, value):
        return False

    def upstream(self):
        """(headers, problems): what the router sends to the upstream."""
        problems = [f"request sent upstream without {p}" for p in (":method", ":path")
                    if not self.values(p)]
        return list(self._pairs), problems


class _Entry:
    __slots__ = ("name", "value", "live")

    def __init__(self, name, value):
        self.name, self.value, self.live = name, value, True


class NginxRequestHeaders:
    def __init__(self, pairs):
        pseudo = {n: bytes(v) for n, v in pairs if n.startswith(":")}
        self.method = pseudo.get(":method", b"GET")
        self.scheme = pseudo.get(":scheme", b"http")
        self.unparsed = pseudo.get(":path", b"/")
        self.uri, _, self.args = self.unparsed.partition(b"?")
        # Kong's $upstream_uri, built before the filter runs (route path kept).
        self.upstream_uri = self.unparsed
        self.entries = []
        authority = pseudo.get(":authority")
        if authority is not None and not any(n == "host" for n, _ in pairs):
            self.entries.append(_Entry("host", authority))
        self.entries += [_Entry(n, bytes(v)) for n, v in pairs if not n.startswith(":")]
        # nginx's parser points headers_in.<name> at the first copy.
        self.builtin = {}
        for e in self.entries:
            if e.name in NGINX_BUILTIN:
                self.builtin.setdefault(e.name, e)

    # --- the filter's view --------------------------------------------------
    def _path(self):
        return self.uri + (b"?" + self.args if self.args else b"")

    def pairs(self):
        host = self.builtin.get("host")
        special = [(":path", self._path()), (":method", self.method), (":scheme", self.scheme),
                   (":authority", host.value if host is not None and host.live else b"")]
        return [(n, v) for n, v in special if v] + [
            (e.name, e.value) for e in self.entries if e.live]

    def values(self, name):
        return [v for n, v in self.pairs() if n == name]

    # --- edits (ngx_http_wasm_set_header and its handlers) -------------------
    def set(self, name, value, log=None):
        if name.startswith(":"):
            return self._set_special(name, value, log)
        if name in NGINX_BUILTIN:
            entry = self.builtin.get(name)
            if entry is None:
                entry = self._set_generic(name, value)
                self.builtin[name] = entry
            else:
                entry.value, entry.live = value, True
            return True
        self._set_generic(name, value)
        return True

    def _set_generic(self, name, value):
        found = None
        for e in self.entries:
            if e.live and e.name == name:
                if found is None:
                    e.value, found = value, e
                else:
                    e.live = False
        if found is None:
            found = _Entry(name, value)
            self.entries.append(found)
        return found

    def add(self, name, value, log=None):
        if name in NGINX_BUILTIN and self.builtin.get(name) is not None:
            if log:
                log(f'cannot add new "{name}" builtin request header')
            return
        entry = _Entry(name, value)
        self.entries.append(entry)
        if name in NGINX_BUILTIN:
            self.builtin[name] = entry

    def remove(self, name):
        if name.startswith(":"):
            return
        if name in NGINX_BUILTIN:
            entry = self.builtin.get(name)
            if entry is not None:
                entry.live = False
            return
        for e in self.entries:
            if e.name == name:
                e.live = False

    def _set_special(self, name, value, log):
        if name == ":path":
            uri, sep, args = bytes(value).partition(b"?")
            self.uri = uri
            if sep:
                self.args = args
            return True
        if name == ":method":
            self.method = bytes(value)
            return True
        if log:
            log(f'cannot set read-only "{name}" header')
        raise ReadOnlyHeader(name)

    def set_all(self, pairs, log):
        for e in self.entries:
            if e.live:
                self.remove(e.name)
        for name, value in pairs:
            name = name.lower()
            try:
                if name.startswith(":"):
                    self._set_special(name, value, log)
                else:
                    # Cleared entries no longer match: the kept header is appended.
                    self._set_generic(name, value)
            except ReadOnlyHeader:
                return

    def set_query(self, query):
        """The request.query property ($args): the filter's view changes,
        Kong's request line does not (it was built from $args already)."""
        self.args = bytes(query)
        return True

    def set_upstream_uri(self, value):
        """The ngx.upstream_uri property: what Kong's proxy_pass sends."""
        self.upstream_uri = bytes(value)
        return True

    # --- what proxy_pass sends -----------------------------------------------
    def upstream(self):
        out = [(":method", self.method), (":path", self.upstream_uri)]
        out.append(("host", b"upstream"))  # proxy_pass writes its own Host
        for e in self.entries:
            if e.live and e.name in NGINX_PROXY_OWN:
                continue
            out.append((e.name, e.value))
        return out, []


def for_profile(name, pairs):
    return (NginxRequestHeaders if name == "kong" else EnvoyRequestHeaders)(pairs)
