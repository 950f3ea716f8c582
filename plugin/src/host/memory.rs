//! An in-memory `Host` for tests and benches: headers, bodies, properties,
//! shared data and a settable clock, recording every effect for assertions.

use std::collections::HashMap;

use crate::host::{DispatchError, HeaderBlock, Host, Metric, SharedDataError};

/// One recorded `dispatch`: target, headers, body.
pub type Dispatched = (String, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Default, Clone)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct MemoryHost {
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_chunk: Vec<u8>,
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    pub now_ms: u64,
    pub metrics: HashMap<Metric, u64>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    pub local_reply: Option<LocalReply>,
    pub dispatched: Vec<Dispatched>,
    /// Make `dispatch` fail (e.g. unknown cluster).
    pub dispatch_fails: bool,
    /// Kong's CAS semantics: a set with cas `None`/0 only creates an absent
    /// key (Envoy's: it writes unconditionally).
    pub kong_cas: bool,
    /// Simulated other workers: before each of the next `interference` sets,
    /// someone else writes the key first (so our cas is stale).
    pub interference: usize,
    /// Make every shared-data set fail with a host error.
    pub shared_fails: bool,
    /// Every `dispatch`'s timeout, in order.
    pub dispatch_timeouts: Vec<u64>,
}

impl MemoryHost {
    pub fn with_request(headers: &[(&str, &str)]) -> Self {
        MemoryHost {
            request_headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            now_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn metric(&self, m: Metric) -> u64 {
        self.metrics.get(&m).copied().unwrap_or(0)
    }
}

impl Host for MemoryHost {
    fn request_headers(&mut self) -> HeaderBlock {
        HeaderBlock::from_pairs(
            self.request_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        )
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.request_headers.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.request_headers.push((name.to_string(), v.to_string()));
        }
    }
    fn add_request_header(&mut self, name: &str, value: &str) {
        self.request_headers
            .push((name.to_string(), value.to_string()));
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> bool {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.properties.insert(key, value.to_vec());
        true
    }
    fn response_headers(&mut self) -> HeaderBlock {
        HeaderBlock::from_pairs(
            self.response_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        )
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        self.response_headers
            .push((name.to_string(), value.to_string()));
    }
    fn replace_response_header(&mut self, name: &str, value: &str) {
        self.response_headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.add_response_header(name, value);
    }
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.request_body.get(..size).map(<[u8]>::to_vec)
    }
    fn replace_request_body(&mut self, body: &[u8]) {
        self.request_body = body.to_vec();
    }
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.response_chunk.get(..size).map(<[u8]>::to_vec)
    }
    fn replace_response_body(&mut self, body: &[u8]) {
        self.response_chunk = body.to_vec();
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.local_reply = Some(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.properties.get(&key).cloned()
    }
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
    fn increment_metric(&mut self, metric: Metric, delta: u64) {
        *self.metrics.entry(metric).or_default() += delta;
    }
    fn shared_data_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    /// Envoy semantics: `None`/0 writes unconditionally, otherwise the cas
    /// must match. With `kong_cas`, `None`/0 only creates an absent key.
    fn shared_data_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError> {
        if self.shared_fails {
            return Err(SharedDataError::Other);
        }
        if self.interference > 0 {
            self.interference -= 1;
            let entry = self.shared.entry(key.to_string()).or_default();
            entry.1 += 1;
        }
        let current = self.shared.get(key).map(|(_, c)| *c);
        match (cas.filter(|c| *c != 0), current) {
            (Some(want), Some(have)) if want != have => return Err(SharedDataError::CasMismatch),
            (None, Some(_)) if self.kong_cas => return Err(SharedDataError::CasMismatch),
            _ => {}
        }
        let next = current.unwrap_or(0) + 1;
        self.shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, DispatchError> {
        self.dispatch_timeouts.push(timeout_ms);
        if self.dispatch_fails {
            return Err(DispatchError);
        }
        self.dispatched.push((
            upstream.to_string(),
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        ));
        Ok(self.dispatched.len() as u32)
    }
}
