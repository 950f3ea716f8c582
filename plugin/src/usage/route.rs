//! Which provider and operation a request path is (SPEC §3 table).

use super::{Operation, Provider, Route};

fn route(provider: Provider, operation: Operation) -> Route {
    Route {
        provider,
        operation,
        path_model: None,
        path_stream: false,
    }
}

/// Detect provider and operation from the request path (query string allowed).
/// Paths that cost nothing (`/v1/messages/count_tokens`, `:countTokens`,
/// retrieving a stored response) are not metered.
pub fn detect(path: &str) -> Option<Route> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path {
        "/v1/chat/completions" => return Some(route(Provider::OpenAi, Operation::Chat)),
        "/v1/responses" => return Some(route(Provider::OpenAi, Operation::Responses)),
        "/v1/embeddings" => return Some(route(Provider::OpenAi, Operation::Embeddings)),
        "/v1/messages" => return Some(route(Provider::Anthropic, Operation::Messages)),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/openai/") {
        return azure(rest);
    }
    gemini(path)
}

/// Azure OpenAI: `/openai/deployments/{d}/{op}` (the deployment names the
/// model) and the newer `/openai/v1/{op}` (the body names it).
fn azure(rest: &str) -> Option<Route> {
    let (deployment, op) = match rest.strip_prefix("deployments/") {
        Some(tail) => {
            let (d, op) = tail.split_once('/')?;
            if d.is_empty() {
                return None;
            }
            (Some(d), op)
        }
        None => (None, rest.strip_prefix("v1/").unwrap_or(rest)),
    };
    let operation = match op {
        "chat/completions" => Operation::Chat,
        "embeddings" => Operation::Embeddings,
        "responses" => Operation::Responses,
        _ => return None,
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
        .any(|prefix| path.starts_with(prefix));
    if !versioned {
        return None;
    }
    let (models_dir, last) = path.rsplit_once('/')?;
    if !(models_dir.ends_with("/models") || models_dir.ends_with("/tunedModels")) {
        return None;
    }
    let (model, method) = last
        .split_once(':')
        .or_else(|| last.split_once("%3A"))
        .or_else(|| last.split_once("%3a"))?;
    let path_stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
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
