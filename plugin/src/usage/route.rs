//! Which provider and operation a request path is (CONTRACTS §3 table).

use super::{Operation, Provider, Route};

fn route(provider: Provider, operation: Operation) -> Route {
    Route {
        provider,
        operation,
        path_model: None,
        path_stream: false,
    }
}

/// What a request path is, for metering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// A known LLM call (CONTRACTS §3 table).
    Metered(Route),
    /// A known call that costs nothing: model lists, token counting,
    /// retrieving a stored response. Passed through unmetered.
    Free,
    /// Nothing we know; `usage.unknown_paths` decides (meter or 404).
    Unknown,
}

/// Detect provider and operation from the request path (query string
/// allowed). The path is normalised first, as providers read it: repeated
/// slashes merged, `.`/`..` segments resolved, `%2F`/`%2E` decoded, a
/// trailing slash dropped, and names matched in any letter case.
pub fn classify(path: &str) -> PathKind {
    // A byte search: `split` with a char-set pattern cost ~300 wasm
    // instructions per call for the same answer.
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or(path);
    // The spelling every SDK sends costs one comparison.
    match path {
        "/v1/chat/completions" => {
            return PathKind::Metered(route(Provider::OpenAi, Operation::Chat))
        }
        "/v1/messages" => {
            return PathKind::Metered(route(Provider::Anthropic, Operation::Messages))
        }
        _ => {}
    }
    let path = normalize(path);
    let path = path.as_ref();
    let is = |fixed: &str| path.eq_ignore_ascii_case(fixed);
    if is("/v1/chat/completions") {
        return PathKind::Metered(route(Provider::OpenAi, Operation::Chat));
    }
    if is("/v1/responses") {
        return PathKind::Metered(route(Provider::OpenAi, Operation::Responses));
    }
    if is("/v1/embeddings") {
        return PathKind::Metered(route(Provider::OpenAi, Operation::Embeddings));
    }
    if is("/v1/messages") {
        return PathKind::Metered(route(Provider::Anthropic, Operation::Messages));
    }
    let found = match strip_prefix_ci(path, "/openai/") {
        Some(rest) => azure(rest),
        None => gemini(path),
    };
    match found {
        Some(r) => PathKind::Metered(r),
        None if is_free(path) => PathKind::Free,
        None => PathKind::Unknown,
    }
}

/// The metered route of `path`, if it is one.
pub fn detect(path: &str) -> Option<Route> {
    match classify(path) {
        PathKind::Metered(r) => Some(r),
        _ => None,
    }
}

/// The unknown route a path is metered under with `unknown_paths: "meter"`.
pub fn unknown() -> Route {
    route(Provider::Unknown, Operation::Unknown)
}

/// Calls that cost nothing (CONTRACTS §3 meters none of them).
fn is_free(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let p = lower.as_str();
    p == "/"
        || p.is_empty()
        || p.ends_with(":counttokens")
        || p == "/v1/messages/count_tokens"
        || [
            "/v1/models",
            "/v1beta/models",
            "/v1alpha/models",
            "/openai/models",
        ]
        .iter()
        .any(|m| {
            p == *m
                || (p.starts_with(m)
                    && p.as_bytes().get(m.len()) == Some(&b'/')
                    && !p.contains(':'))
        })
        || p.starts_with("/v1/responses/")
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(prefix.len()..))
}

/// `path` as a provider resolves it (see `classify`). Borrowed, and nearly
/// free, for the ordinary path that needs nothing.
fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    let b = path.as_bytes();
    let needs = b.len() > 1 && b.last() == Some(&b'/')
        || b.iter()
            .enumerate()
            .any(|(i, &c)| c == b'%' || (c == b'/' && matches!(b.get(i + 1), Some(b'/' | b'.'))));
    if !needs {
        return std::borrow::Cow::Borrowed(path);
    }
    // %2F and %2E are a slash and a dot to the provider; other escapes stay.
    let mut decoded = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        decoded.push_str(&rest[..at]);
        let esc = rest.get(at + 1..at + 3).unwrap_or("");
        if esc.eq_ignore_ascii_case("2f") {
            decoded.push('/');
            rest = &rest[at + 3..];
        } else if esc.eq_ignore_ascii_case("2e") {
            decoded.push('.');
            rest = &rest[at + 3..];
        } else {
            decoded.push('%');
            rest = &rest[at + 1..];
        }
    }
    decoded.push_str(rest);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

/// Azure OpenAI: `/openai/deployments/{d}/{op}` (the deployment names the
/// model) and the newer `/openai/v1/{op}` (the body names it).
fn azure(rest: &str) -> Option<Route> {
    let (deployment, op) = match strip_prefix_ci(rest, "deployments/") {
        Some(tail) => {
            let (d, op) = tail.split_once('/')?;
            if d.is_empty() {
                return None;
            }
            (Some(d), op)
        }
        None => (None, strip_prefix_ci(rest, "v1/").unwrap_or(rest)),
    };
    let operation = if op.eq_ignore_ascii_case("chat/completions") {
        Operation::Chat
    } else if op.eq_ignore_ascii_case("embeddings") {
        Operation::Embeddings
    } else if op.eq_ignore_ascii_case("responses") {
        Operation::Responses
    } else {
        return None;
    };
    Some(Route {
        path_model: deployment.map(str::to_owned),
        ..route(Provider::Azure, operation)
    })
}

/// Gemini: `/{v1|v1beta|v1alpha}/…/models/{m}:generateContent` or
/// `:streamGenerateContent` (the colon may arrive percent-encoded).
fn gemini(path: &str) -> Option<Route> {
    let versioned = ["/v1/", "/v1beta/", "/v1alpha/"]
        .iter()
        .any(|prefix| strip_prefix_ci(path, prefix).is_some());
    if !versioned {
        return None;
    }
    let (models_dir, last) = path.rsplit_once('/')?;
    let dir = models_dir.rsplit('/').next().unwrap_or("");
    if !(dir.eq_ignore_ascii_case("models") || dir.eq_ignore_ascii_case("tunedModels")) {
        return None;
    }
    let (model, method) = last
        .split_once(':')
        .or_else(|| last.split_once("%3A"))
        .or_else(|| last.split_once("%3a"))?;
    let path_stream = if method.eq_ignore_ascii_case("generateContent") {
        false
    } else if method.eq_ignore_ascii_case("streamGenerateContent") {
        true
    } else {
        return None;
    };
    if model.is_empty() {
        return None;
    }
    Some(Route {
        path_model: Some(model.to_owned()),
        path_stream,
        ..route(Provider::Gemini, Operation::Generate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(path: &str) -> Option<(Provider, Operation, Option<String>, bool)> {
        detect(path).map(|r| (r.provider, r.operation, r.path_model, r.path_stream))
    }

    #[test]
    fn spec_table() {
        use Operation::*;
        use Provider::*;
        assert_eq!(
            pm("/v1/chat/completions"),
            Some((OpenAi, Chat, None, false))
        );
        assert_eq!(
            pm("/v1/responses?x=1"),
            Some((OpenAi, Responses, None, false))
        );
        assert_eq!(
            pm("/v1/embeddings"),
            Some((OpenAi, Embeddings, None, false))
        );
        assert_eq!(pm("/v1/messages"), Some((Anthropic, Messages, None, false)));
        assert_eq!(
            pm("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"),
            Some((Azure, Chat, Some("gpt4o-prod".into()), false))
        );
        assert_eq!(
            pm("/openai/deployments/emb/embeddings"),
            Some((Azure, Embeddings, Some("emb".into()), false))
        );
        assert_eq!(
            pm("/openai/v1/chat/completions"),
            Some((Azure, Chat, None, false))
        );
        assert_eq!(
            pm("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some((Gemini, Generate, Some("gemini-2.5-flash".into()), false))
        );
        assert_eq!(
            pm("/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
            Some((Gemini, Generate, Some("gemini-2.0-flash".into()), true))
        );
        assert_eq!(
            pm("/v1beta/models/gemini-2.0-flash%3AstreamGenerateContent"),
            Some((Gemini, Generate, Some("gemini-2.0-flash".into()), true))
        );
    }

    #[test]
    fn path_variants_are_the_same_call() {
        for path in [
            "//v1/chat/completions",
            "/v1//chat/completions",
            "/./v1/chat/completions",
            "/v1/./chat/completions",
            "/v1/x/../chat/completions",
            "/v1/chat/completions/",
            "/v1%2Fchat%2Fcompletions",
            "/v1/chat%2fcompletions",
            "/V1/Chat/Completions",
            "/v1/chat/completions/?a=b",
        ] {
            assert_eq!(
                pm(path),
                Some((Provider::OpenAi, Operation::Chat, None, false)),
                "{path}"
            );
        }
        assert_eq!(
            pm("/V1BETA/models/gemini-2.0-flash:GenerateContent/"),
            Some((
                Provider::Gemini,
                Operation::Generate,
                Some("gemini-2.0-flash".into()),
                false
            ))
        );
        assert_eq!(
            pm("/openai//Deployments/d1/chat/completions"),
            Some((Provider::Azure, Operation::Chat, Some("d1".into()), false))
        );
    }

    #[test]
    fn free_paths_and_unknown_paths_differ() {
        for free in [
            "/v1/models",
            "/v1/models/gpt-4o",
            "/v1beta/models",
            "/v1/messages/count_tokens",
            "/v1beta/models/gemini-2.0-flash:countTokens",
            "/v1/responses/resp_123",
            "/",
        ] {
            assert_eq!(classify(free), PathKind::Free, "{free}");
        }
        for unknown in [
            "/v1/completions",
            "/v1/images/generations",
            "/v1/chat/completionsx",
            "/openai/deployments/x/completions",
            "/other/models/m:generateContent",
        ] {
            assert_eq!(classify(unknown), PathKind::Unknown, "{unknown}");
        }
    }

    #[test]
    fn free_and_unknown_paths_are_not_metered() {
        for path in [
            "/v1/messages/count_tokens",
            "/v1beta/models/gemini-2.0-flash:countTokens",
            "/v1/responses/resp_123",
            "/v1/models",
            "/openai/deployments//chat/completions",
            "/openai/deployments/x/completions",
            "/v1beta/models/:generateContent",
            "/other/models/m:generateContent",
            "",
            "/",
        ] {
            assert_eq!(detect(path), None, "{path}");
        }
    }
}
