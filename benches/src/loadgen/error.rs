//! The load generator's one error type: what stops a run before or after the load (set-up,
//! configuration, writing the results). Failures *during* the load are not errors: they are
//! counted in the report.

/// Why a run could not be set up or reported.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A bad option or option combination.
    #[error("configuration: {0}")]
    Config(String),
    /// A path or body template that does not parse.
    #[error("template `{field}`: {message}")]
    Template {
        /// The endpoint field, e.g. `hold_path`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A set-up request the server refused.
    #[error("{what}: the server answered {status}: {body}")]
    Refused {
        /// What was being done, e.g. `admin login`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A set-up request that got no answer.
    #[error("{what}: {source}")]
    Http {
        /// What was being done.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer without a field the configured shape expects.
    #[error("{what}: {message}")]
    Shape {
        /// What was being read.
        what: String,
        /// What was missing or malformed.
        message: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing the chart.
    #[error("chart: {0}")]
    Chart(String),
}

impl LoadgenError {
    /// A refusal, keeping the first 300 bytes of the body.
    pub(crate) fn refused(what: impl Into<String>, status: u16, body: &[u8]) -> Self {
        let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Self::Refused { what: what.into(), status, body }
    }

    /// A missing or malformed field.
    pub(crate) fn shape(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Shape { what: what.into(), message: message.into() }
    }

    /// A file error.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}
