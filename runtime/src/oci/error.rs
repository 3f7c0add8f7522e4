//! The OCI runtime's error type: every message names what failed (container
//! id, path, config field, pid).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json (or a process.json) does not parse: the field and position.
    #[error("{}: {}{msg}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Config {
        file: PathBuf,
        field: String,
        msg: String,
    },
    /// A config field that parses but cannot be used.
    #[error("invalid config: {field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("container does not exist: {0}")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("invalid container id format: {0:?}")]
    BadId(String),
    /// The operation does not fit the container's status (runc's wording).
    #[error("{0}")]
    WrongState(String),
    /// The container's init failed during setup; its message.
    #[error("container init: {0}")]
    Init(String),
    #[error("sync with the runtime: {0}")]
    Sync(String),
    #[error("exec: {0}")]
    Exec(String),
    #[error("capabilities: {0}")]
    Caps(String),
    #[error("{kind} hook {path}: {msg}")]
    Hook {
        kind: &'static str,
        path: String,
        msg: String,
    },
    /// A container restore's own step failed (in the init: the saved tmpfs
    /// contents, becoming the stub).
    #[error("restore: {0}")]
    Restore(String),
    #[error("{0}: not implemented yet")]
    NotImplemented(String),
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
}
