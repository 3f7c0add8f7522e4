//! The shim's options: which `snaprun` to run, its `--root`, and the
//! snapshot defaults for restore-on-create. They come from the task's
//! runtime options: containerd's generic `runtimeoptions.v1.Options`
//! (`ConfigPath` in a CRI runtime entry, `ctr run --runtime-config-path`)
//! naming a TOML file, or runc's `containerd.runc.v1.Options`
//! (`BinaryName`, `Root`). What create resolved is kept in the bundle, for
//! the `delete` the shim binary is called with after the shim is gone.

use std::fs;
use std::path::{Path, PathBuf};

use containerd_shim::api::Options as RuncOptions;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::Snaprun;

/// Where the resolved options are kept in the bundle.
pub const SAVED: &str = "snaprun-shim.json";
/// snaprun's log in the bundle.
pub const RUNTIME_LOG: &str = "snaprun-log.json";
/// Where a runtime's state lives unless the options say otherwise (one
/// directory per containerd namespace below it, as runc's shim does).
pub const DEFAULT_ROOT: &str = "/run/containerd/snaprun";

/// The TOML file `ConfigPath` names.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// The snaprun binary (default: `snaprun` beside the shim, else on PATH).
    pub binary: Option<PathBuf>,
    /// snaprun's `--root` (default: /run/containerd/snaprun/NAMESPACE).
    pub root: Option<PathBuf>,
    /// The snapshot store (default: $SNAPRUN_STORE, else /var/lib/snaprun).
    pub store: Option<PathBuf>,
    /// A snapshot (NAME:TAG) every container of this runtime restores from,
    /// unless its annotations name another.
    pub snapshot: Option<String>,
    /// `cold`: start normally when the snapshot is missing or fails.
    pub fallback: Option<String>,
}

/// The options a container's shim works with.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Resolved {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub config: ShimConfig,
}

impl Resolved {
    pub fn snaprun(&self, bundle: &Path) -> Snaprun {
        Snaprun {
            binary: self.binary.clone(),
            root: self.root.clone(),
            log: bundle.join(RUNTIME_LOG),
        }
    }

    pub fn save(&self, bundle: &Path) -> Result<()> {
        let path = bundle.join(SAVED);
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Sys {
            what: "encode the shim options".into(),
            source: e.into(),
        })?;
        fs::write(&path, text).map_err(|e| Error::io("write", path, e))
    }

    pub fn load(bundle: &Path) -> Result<Self> {
        let path = bundle.join(SAVED);
        let text = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
    }
}

/// The `config_path` field (2) of containerd's runtimeoptions.v1.Options.
fn config_path_of(bytes: &[u8]) -> Result<String> {
    let bad = |e: containerd_shim_protos::protobuf::Error| {
        Error::invalid("runtimeoptions.v1.Options", e.to_string())
    };
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut path = String::new();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(bad)? {
        match tag {
            // field 2, length-delimited
            0x12 => path = input.read_string().map_err(bad)?,
            _ => {
                let wire = tag & 7;
                let field = tag >> 3;
                let wt = containerd_shim_protos::protobuf::rt::WireType::new(wire)
                    .ok_or_else(|| Error::invalid("runtimeoptions.v1.Options", "bad wire type"))?;
                input.skip_field(wt).map_err(bad)?;
                let _ = field;
            }
        }
    }
    Ok(path)
}

pub fn read_config(path: &Path) -> Result<ShimConfig> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("read the shim config", path, e))?;
    toml::from_str(&text).map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
}

/// `snaprun` beside this binary, else the name for a PATH lookup.
fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("snaprun")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("snaprun"))
}

/// Works out the options from the task's runtime options (if any).
pub fn resolve(options: Option<&Any>, namespace: &str) -> Result<Resolved> {
    let mut config = ShimConfig::default();
    let mut runc_binary = None;
    let mut runc_root = None;
    if let Some(any) = options.filter(|a| !a.type_url.is_empty()) {
        let url = any.type_url.as_str();
        if url.ends_with("runtimeoptions.v1.Options") {
            let path = config_path_of(&any.value)?;
            if !path.is_empty() {
                config = read_config(Path::new(&path))?;
            }
        } else if url.ends_with("containerd.runc.v1.Options") {
            let o = RuncOptions::parse_from_bytes(&any.value)
                .map_err(|e| Error::invalid("containerd.runc.v1.Options", e.to_string()))?;
            runc_binary = (!o.binary_name.is_empty()).then(|| PathBuf::from(o.binary_name));
            runc_root = (!o.root.is_empty()).then(|| PathBuf::from(o.root));
        } else {
            return Err(Error::invalid(
                "runtime options",
                format!("type {url} is not one this shim reads (runtimeoptions.v1.Options or containerd.runc.v1.Options)"),
            ));
        }
    }
    let binary = config
        .binary
        .clone()
        .or(runc_binary)
        .unwrap_or_else(default_binary);
    let root = config
        .root
        .clone()
        .or(runc_root)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
        .join(namespace);
    Ok(Resolved {
        binary,
        root,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_path_is_read_from_runtime_options() {
        // type_url = "x" (field 1), config_path = "/etc/s.toml" (field 2)
        let mut bytes = vec![0x0a, 1, b'x', 0x12, 11];
        bytes.extend_from_slice(b"/etc/s.toml");
        assert_eq!(config_path_of(&bytes).unwrap(), "/etc/s.toml");
    }

    #[test]
    fn config_file_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shim.toml");
        fs::write(
            &p,
            "binary = \"/opt/snaprun\"\nstore = \"/srv/store\"\nsnapshot = \"model:v1\"\nfallback = \"cold\"\n",
        )
        .unwrap();
        let c = read_config(&p).unwrap();
        assert_eq!(c.binary.as_deref(), Some(Path::new("/opt/snaprun")));
        assert_eq!(c.snapshot.as_deref(), Some("model:v1"));
        fs::write(&p, "stor = \"/x\"\n").unwrap();
        let e = read_config(&p).unwrap_err().to_string();
        assert!(e.contains("stor"), "{e}");
    }

    #[test]
    fn runc_options_give_binary_and_root() {
        let o = RuncOptions {
            binary_name: "/usr/bin/snaprun".into(),
            root: "/run/x".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let r = resolve(Some(&any), "k8s.io").unwrap();
        assert_eq!(r.binary, Path::new("/usr/bin/snaprun"));
        assert_eq!(r.root, Path::new("/run/x/k8s.io"));
        let r = resolve(None, "default").unwrap();
        assert_eq!(r.root, Path::new("/run/containerd/snaprun/default"));
    }
}
