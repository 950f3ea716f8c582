//! Logs through `tracing`: one line per event on stderr, human text by
//! default or JSON (`--log-format json` / `AISPEND_LOG_FORMAT=json`), level
//! from `--log-level` / `AISPEND_LOG_LEVEL`, else `RUST_LOG`, else `info`.
//! Tokens and database passwords are never logged (`state::Tokens` does not
//! print them; database URLs go through `store::redacted_url`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// The filter: an explicit level (or `RUST_LOG`-style directives) wins, then
/// `RUST_LOG`, then `info`.
pub fn filter(level: Option<&str>) -> Result<EnvFilter, String> {
    match level.filter(|l| !l.trim().is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| format!("invalid log level {directives:?}: {e}")),
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))),
    }
}

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level)?)
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_parse_bad_ones_are_errors() {
        assert!(filter(Some("debug")).is_ok());
        assert!(filter(Some("warn,aispend_collector=debug")).is_ok());
        assert!(filter(None).is_ok());
        assert!(filter(Some("loud=very")).is_err());
    }
}
