//! What the provider receives: the request-header and query edits of an
//! admitted call, decided here as values and applied through the host
//! profile, with no header map write and no pseudo-header in any edit but
//! Envoy's `:path` (Kong takes the query through `request.query`).
//!
//! - Every client `x-aispend-*` header, every credential header and every
//!   header that carries the presented virtual key (a cookie, say) is taken
//!   out: removed on Envoy, overwritten with an empty value on Kong (where a
//!   removed header still reaches the upstream; see `profile`).
//! - The canonical tags, key id, request id and the provider credential are
//!   set: on both hosts that overwrites a client copy in place.
//! - With `signing`, `x-aispend-signature` signs what was set (`signing`).
//! - A header that must be taken out or overwritten but was sent more than
//!   once is refused on Kong (400 `duplicate_header`): the engine can only
//!   edit the first copy, and the others would reach the provider.
//! - Query parameters that may carry the key (`key`, `api_key`, `apikey`, or
//!   any whose value is the presented key) are removed.

use std::borrow::Cow;

use crate::ascii::eq_ignore_case;
use crate::filter::Filter;
use crate::host::profile::{QueryEdit, Removal};
use crate::host::Host;
use crate::request::decision::{Admitted, Denial};
use crate::request::identity::{self, CREDENTIAL_HEADERS};
use crate::request::signing;
use crate::request::tags;
use crate::usage::Route;

/// Kong's `$upstream_uri` (its `proxy_pass` target's path and query).
const KONG_UPSTREAM_URI: [&str; 2] = ["ngx", "upstream_uri"];

/// One change to the request on its way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Overwrite the header (in place when the client sent it) or add it.
    Set(&'a str, Cow<'a, str>),
    /// Add the header: the client did not send it (the host then has no
    /// copy to look for, which costs Envoy a search of the map per set).
    Add(&'a str, Cow<'a, str>),
    /// The provider must not see this header's value.
    Drop(&'a str),
    /// The query string without the key-carrying parameters: the path it
    /// leaves, the remaining query (possibly empty), and the presented key
    /// (to clean a query the host already copied elsewhere).
    Query {
        base: &'a str,
        query: String,
        key: Option<&'a str>,
    },
}

/// What the upstream edits depend on besides the headers.
pub struct Inputs<'a> {
    pub filter: &'a Filter,
    pub admitted: &'a Admitted,
    pub route: Option<&'a Route>,
    pub request_id: &'a str,
    /// The body may be rewritten after the headers left (so its length may
    /// change): Envoy must not forward the client's `content-length`.
    pub body_may_change: bool,
    /// The clock (ms since the epoch), for the tag signature's timestamp.
    pub now_ms: u64,
}

/// The edits for `headers` (the request as the client sent it), or the
/// refusal when the host cannot keep a value from the provider.
pub fn plan<'a>(headers: &[(&'a str, &'a str)], inp: &Inputs<'a>) -> Result<Vec<Edit<'a>>, Denial> {
    let f = inp.filter;
    let profile = f.profile;
    let credential = inp.route.and_then(|r| f.tags.credential(r.provider));
    let strip_encoding = inp.route.is_some() && f.config.usage.strip_accept_encoding;
    let drop_length = inp.body_may_change && !profile.recomputes_content_length();
    // The virtual key the caller presented: wherever else it appears, it goes.
    let key = match inp.admitted.principal.auth {
        identity::AuthKind::ApiKey => identity::presented_key(headers),
        _ => None,
    };
    // The headers the filter sets: the credential, then one per tag, the
    // key id and the request id (borrowed: nothing is collected).
    let sets = || {
        credential.into_iter().chain(tags::injected(
            &f.schema,
            &inp.admitted.principal,
            inp.request_id,
        ))
    };
    // Only an `x-aispend-` header or the credential's can be one the filter
    // sets; most names are told apart by their first byte.
    let is_set = |name: &str| {
        let prefixed = name
            .as_bytes()
            .first()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'x'))
            && name
                .get(..tags::PREFIX.len())
                .is_some_and(|p| eq_ignore_case(p, tags::PREFIX));
        credential.is_some_and(|(c, _)| eq_ignore_case(c, name))
            || (prefixed && sets().any(|(n, _)| eq_ignore_case(n, name)))
    };
    // Kong can edit only the first copy of a header: remember which names
    // were edited, to refuse a repeat.
    let track = !profile.clears_duplicates();

    let mut edits: Vec<Edit<'a>> = Vec::with_capacity(inp.admitted.principal.tags.len() + 8);
    let mut guarded: Vec<&'a str> = Vec::new();
    // Names the filter sets that the client sent too: those are overwritten,
    // the others added.
    let mut present: Vec<&'a str> = Vec::new();
    let mut query = None;
    for &(name, value) in headers {
        if name == ":path" {
            query = identity::query_without_key(value, key);
            continue;
        }
        if name.starts_with(':') {
            continue;
        }
        let secret = CREDENTIAL_HEADERS.iter().any(|c| eq_ignore_case(name, c))
            || inp.admitted.client.strip.iter().any(|s| s == name)
            || key.is_some_and(|k| crate::json::bytes::contains(value.as_bytes(), k.as_bytes()));
        let set = is_set(name);
        if track && (secret || set) {
            guarded.push(name);
        }
        if set {
            present.push(name);
            continue;
        }
        let drop = secret
            || (strip_encoding && eq_ignore_case(name, "accept-encoding"))
            || (drop_length && eq_ignore_case(name, "content-length"));
        if drop
            && !edits
                .iter()
                .any(|e| matches!(e, Edit::Drop(n) if eq_ignore_case(n, name)))
        {
            edits.push(Edit::Drop(name));
        }
    }
    if track {
        if let Some(name) = repeated(&guarded) {
            return Err(Denial::duplicate_header(name));
        }
    }
    edits.extend(sets().map(|(n, v)| {
        if present.iter().any(|p| eq_ignore_case(p, n)) {
            Edit::Set(n, Cow::Borrowed(v))
        } else {
            Edit::Add(n, Cow::Borrowed(v))
        }
    }));
    // Signed tags: over what was just set (a client copy was dropped above).
    if let Some(signer) = &f.signer {
        let signature = signer.sign(inp.now_ms / 1000, sets());
        edits.push(Edit::Set(signing::SIGNATURE_HEADER, Cow::Owned(signature)));
    }
    if let Some((base, query)) = query {
        edits.push(Edit::Query { base, query, key });
    }
    Ok(edits)
}

/// The first name that appears twice (ASCII case ignored).
fn repeated<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().enumerate().find_map(|(i, n)| {
        names
            .get(i + 1..)?
            .iter()
            .any(|m| m.eq_ignore_ascii_case(n))
            .then_some(*n)
    })
}

/// Apply `edits` the way this host needs them.
pub fn apply(host: &mut dyn Host, filter: &Filter, edits: &[Edit<'_>]) {
    let profile = filter.profile;
    for edit in edits {
        match edit {
            Edit::Set(name, value) => host.set_request_header(name, Some(value)),
            Edit::Add(name, value) => host.add_request_header(name, value),
            Edit::Drop(name) => match profile.removal() {
                Removal::Remove => host.set_request_header(name, None),
                Removal::Blank => host.set_request_header(name, Some("")),
            },
            Edit::Query { base, query, key } => match profile.query_edit() {
                QueryEdit::Path if query.is_empty() => host.set_request_header(":path", Some(base)),
                QueryEdit::Path => {
                    host.set_request_header(":path", Some(&format!("{base}?{query}")))
                }
                QueryEdit::QueryProperty => {
                    // nginx's own proxy_pass sends `$args` once it is set...
                    if !host.set_property(&["request", "query"], query.as_bytes()) {
                        log::error!("aispend: cannot remove the key from the query string");
                    }
                    // ...Kong's sends `$upstream_uri`, built before the filter
                    // runs: clean the query it copied too.
                    let upstream_uri = host
                        .property(&KONG_UPSTREAM_URI)
                        .and_then(|v| String::from_utf8(v).ok());
                    if let Some(uri) = upstream_uri {
                        if let Some((path, rest)) = identity::query_without_key(&uri, *key) {
                            let cleaned = if rest.is_empty() {
                                path.to_string()
                            } else {
                                format!("{path}?{rest}")
                            };
                            if !host.set_property(&KONG_UPSTREAM_URI, cleaned.as_bytes()) {
                                log::error!("aispend: cannot remove the key from $upstream_uri");
                            }
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
