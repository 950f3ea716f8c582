//! Budget cap flags (CONTRACTS §6): the collector's `GET /v1/caps` answer, the
//! compact form kept in shared data (one key for the whole gateway), and the
//! request-path check against a principal.
//!
//! Shared-data value: `<fetched_at_ms>\n<version>\n` then one line per cap,
//! `<h|s>\t<budget_id>\t<scope name>=<value>\t…`. The first line changes on
//! every poll; the rest only when the flags change, so a worker re-decodes
//! the flags only when they differ from what it already has.

use std::rc::Rc;

use serde::Deserialize;

use crate::config::FailureMode;
use crate::request::identity::{Principal, TagSchema};

pub const SHARED_KEY: &str = "aispend:caps";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapState {
    Soft,
    Hard,
}

/// One scope condition: a tag (by schema index) or the key id must equal a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeKey {
    KeyId,
    Tag(usize),
    /// A tag this gateway does not know: no principal can match it.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub budget_id: String,
    pub state: CapState,
    pub scope: Vec<(ScopeKey, String)>,
}

impl Cap {
    /// Every scope pair equals the principal's tag (or key id). An empty
    /// scope matches nobody (a budget with no scope is a collector bug).
    pub fn matches(&self, p: &Principal) -> bool {
        !self.scope.is_empty()
            && self.scope.iter().all(|(key, value)| match key {
                ScopeKey::KeyId => *p.key_id == **value,
                ScopeKey::Tag(i) => p.tags.iter().any(|(t, v)| t == i && v == value),
                ScopeKey::Unknown => false,
            })
    }
}

/// The decoded flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSet {
    pub caps: Vec<Cap>,
}

/// What the caps say about one principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub hard: Option<&'a str>,
    pub soft: Vec<&'a str>,
}

impl CapSet {
    pub fn verdict(&self, p: &Principal) -> Verdict<'_> {
        let mut v = Verdict::default();
        for cap in self.caps.iter().filter(|c| c.matches(p)) {
            match cap.state {
                CapState::Hard => {
                    v.hard.get_or_insert(cap.budget_id.as_str());
                }
                CapState::Soft => v.soft.push(cap.budget_id.as_str()),
            }
        }
        v
    }
}

// --- the collector's answer ------------------------------------------------

#[derive(Debug, Deserialize)]
struct CapsDoc {
    #[serde(default)]
    version: serde_json::Value,
    #[serde(default)]
    caps: Vec<CapDoc>,
    /// How many strict budgets exist (kept as the flag line `x\t<n>`, which
    /// `decode_flags` skips; the poller reads it with [`strict_marked`]).
    #[serde(default)]
    strict: u64,
}

/// The flag line that says strict budgets exist.
const STRICT_MARK: &str = "x\t";

/// Whether flag lines (shared-data form) say strict budgets exist.
pub fn strict_marked(flags: &str) -> bool {
    flags.starts_with(STRICT_MARK) || flags.contains("\nx\t")
}

#[derive(Debug, Deserialize)]
struct CapDoc {
    budget_id: String,
    #[serde(default)]
    scope: std::collections::BTreeMap<String, String>,
    state: String,
}

/// The flags of a `/v1/caps` answer in shared-data form (without the
/// fetched-at line), and its version. `ok` caps are dropped; an unknown state
/// or a name that would break the line format is an error, so a bad answer
/// keeps the previous flags instead of silently lifting a cap.
pub fn from_collector(body: &[u8]) -> Result<(String, String), String> {
    let doc: CapsDoc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let version = match doc.version {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    if !clean(&version) {
        return Err("version has control characters".into());
    }
    let mut out = String::with_capacity(64 * doc.caps.len());
    for cap in &doc.caps {
        let state = match cap.state.as_str() {
            "hard" => 'h',
            "soft" => 's',
            "ok" => continue,
            other => return Err(format!("unknown cap state `{other}`")),
        };
        if !clean(&cap.budget_id) || cap.budget_id.is_empty() {
            return Err("bad budget_id".into());
        }
        out.push(state);
        out.push('\t');
        out.push_str(&cap.budget_id);
        for (name, value) in &cap.scope {
            if !clean(name) || name.contains('=') || !clean(value) {
                return Err(format!("bad scope in budget `{}`", cap.budget_id));
            }
            out.push('\t');
            out.push_str(name);
            out.push('=');
            out.push_str(value);
        }
        out.push('\n');
    }
    if doc.strict > 0 {
        out.push_str(&format!("{STRICT_MARK}{}\n", doc.strict));
    }
    Ok((version, out))
}

fn clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The full shared-data value.
pub fn encode(fetched_at_ms: u64, version: &str, flags: &str) -> Vec<u8> {
    format!("{fetched_at_ms}\n{version}\n{flags}").into_bytes()
}

/// The parts of a shared-data value: fetched-at, version, flag lines.
pub fn split(value: &[u8]) -> Option<(u64, &str, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let (fetched, rest) = text.split_once('\n')?;
    let (version, flags) = rest.split_once('\n')?;
    Some((fetched.parse().ok()?, version, flags))
}

/// Flag lines → caps, scope names resolved against this gateway's tags.
pub fn decode_flags(flags: &str, schema: &TagSchema) -> CapSet {
    let caps = flags
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let state = match fields.next()? {
                "h" => CapState::Hard,
                "s" => CapState::Soft,
                _ => return None,
            };
            let budget_id = fields.next()?.to_string();
            let scope = decode_scope(fields, schema);
            Some(Cap {
                budget_id,
                state,
                scope,
            })
        })
        .collect();
    CapSet { caps }
}

/// `name=value` scope fields of a flag or lease line → scope keys resolved
/// against this gateway's tags (`key_id`, a tag, or a name it does not know).
pub fn decode_scope<'a>(
    fields: impl Iterator<Item = &'a str>,
    schema: &TagSchema,
) -> Vec<(ScopeKey, String)> {
    fields
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| {
            let key = if name == "key_id" {
                ScopeKey::KeyId
            } else {
                schema.index(name).map_or(ScopeKey::Unknown, ScopeKey::Tag)
            };
            (key, value.to_string())
        })
        .collect()
}

// --- the request path's view ------------------------------------------------

/// A worker's decoded copy of the shared flags: re-read only when the shared
/// value's cas changed, re-decoded only when the flag lines changed.
#[derive(Debug, Default)]
pub struct CapsView {
    cas: Option<u32>,
    flags_text: String,
    set: Rc<CapSet>,
    fetched_at_ms: Option<u64>,
    /// When this VM started: with no flags yet, staleness counts from here.
    started_ms: u64,
    /// The strict budgets this host holds leases of, and model prices.
    pub strict: crate::controls::lease::StrictView,
}

/// The caps as of now, and whether they are too old to trust.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub set: Rc<CapSet>,
    pub stale: bool,
}

impl CapsView {
    pub fn new(started_ms: u64) -> Self {
        CapsView {
            started_ms,
            ..CapsView::default()
        }
    }

    /// Update from a shared-data read (`value`, `cas`) at `now_ms`, then
    /// answer the snapshot for that time.
    pub fn refresh(
        &mut self,
        value: Option<&[u8]>,
        cas: Option<u32>,
        now_ms: u64,
        stale_after_ms: u64,
        schema: &TagSchema,
    ) -> Snapshot {
        self.update(value, cas, schema);
        self.snapshot(now_ms, stale_after_ms)
    }

    /// Take in a shared-data read (`value`, `cas`). The root context does
    /// this on its tick, so the request path makes no hostcall for caps.
    pub fn update(&mut self, value: Option<&[u8]>, cas: Option<u32>, schema: &TagSchema) {
        if cas.is_some() && cas == self.cas {
            return;
        }
        self.cas = cas;
        match value.and_then(split) {
            Some((fetched, _version, flags)) => {
                self.fetched_at_ms = Some(fetched);
                if flags != self.flags_text {
                    self.flags_text = flags.to_string();
                    self.set = Rc::new(decode_flags(flags, schema));
                }
            }
            None => {
                self.fetched_at_ms = None;
                self.flags_text.clear();
                self.set = Rc::default();
            }
        }
    }

    /// No cap is flagged and the flags are fresh: every caller passes
    /// (what `check` of a `snapshot` would say, without taking one).
    pub fn clear_at(&self, now_ms: u64, stale_after_ms: u64) -> bool {
        self.set.caps.is_empty() && !self.stale_at(now_ms, stale_after_ms)
    }

    /// The flags as last taken in, and whether they are too old at `now_ms`.
    pub fn snapshot(&self, now_ms: u64, stale_after_ms: u64) -> Snapshot {
        Snapshot {
            set: self.set.clone(),
            stale: self.stale_at(now_ms, stale_after_ms),
        }
    }

    /// The flags are older than `stale_after_ms` at `now_ms` (counted from
    /// the VM's start while none came).
    fn stale_at(&self, now_ms: u64, stale_after_ms: u64) -> bool {
        let since = self.fetched_at_ms.unwrap_or(self.started_ms);
        now_ms.saturating_sub(since) > stale_after_ms
    }
}

/// The caps decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapCheck {
    Pass {
        warnings: Vec<String>,
    },
    /// 402: the budget named is at its hard cap.
    Exceeded(String),
    /// 503: caps are stale and the failure mode is fail_closed.
    Unavailable,
}

/// Stale flags are still applied (spend only grows within a period, so a
/// hard cap seen last stays true); `fail_closed` refuses on top of that.
pub fn check(snapshot: &Snapshot, principal: &Principal, mode: FailureMode) -> CapCheck {
    let verdict = snapshot.set.verdict(principal);
    if let Some(budget) = verdict.hard {
        return CapCheck::Exceeded(budget.to_string());
    }
    if snapshot.stale && mode == FailureMode::FailClosed {
        return CapCheck::Unavailable;
    }
    CapCheck::Pass {
        warnings: verdict.soft.iter().map(|s| s.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests;
