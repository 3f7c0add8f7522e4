//! The shim's errors, and how each reaches containerd: as a ttrpc status
//! whose code containerd turns back into its own error kinds (not found,
//! already exists, failed precondition...).

use std::path::PathBuf;

use containerd_shim_protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request does not fit the process's state (exec in a stopped
    /// container, delete of a running one).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: String, reason: String },
    /// `snaprun ARGS` failed; `message` is its own error.
    #[error("snaprun {command} of container {id} failed: {message}")]
    Runtime {
        command: String,
        id: String,
        message: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    /// The container's annotations ask for a restore that cannot happen
    /// (and do not allow a cold start instead).
    #[error("restore-on-create of container {id}: {reason}")]
    Restore { id: String, reason: String },
    #[error("{what}: {source}")]
    Shim {
        what: String,
        source: containerd_shim::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The last OS error, for a failed libc call.
    pub fn last_os(what: impl Into<String>) -> Self {
        Error::Sys {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn shim(what: impl Into<String>, source: containerd_shim::Error) -> Self {
        Error::Shim {
            what: what.into(),
            source,
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) | Error::Restore { .. } => Code::FAILED_PRECONDITION,
            Error::InvalidArgument { .. } => Code::INVALID_ARGUMENT,
            Error::Runtime { .. } | Error::Io { .. } | Error::Sys { .. } | Error::Shim { .. } => {
                Code::UNKNOWN
            }
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_reach_containerd() {
        let e: ttrpc::Error = Error::NotFound("exec e1".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert_eq!(s.message(), "exec e1 not found");
            }
            other => panic!("{other:?}"),
        }
        let e: ttrpc::Error = Error::invalid("checkpoint option cgroups_mode", "full").into();
        match e {
            ttrpc::Error::RpcStatus(s) => assert_eq!(s.code(), Code::INVALID_ARGUMENT),
            other => panic!("{other:?}"),
        }
    }
}
