//! The controller manager's error type, shared by every controller.

/// A controller failure; reconcile errors are requeued with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. `create pod default/web-abc`.
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object the controller needs is malformed (e.g. an invalid selector).
    #[error("{0}")]
    Invalid(String),
    /// A watch cache ended before its first list.
    #[error("{0} watch ended before its initial list")]
    WatchEnded(&'static str),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube {
            action,
            source: Box::new(source),
        }
    }

    /// True when the API server answered 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True when the API server answered 409 Conflict (stale resourceVersion
    /// or an object that already exists).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// The message of an API error (the Status message upstream's events
    /// and conditions carry), or the error's text.
    pub fn api_message(&self) -> String {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }

    /// The HTTP status code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
