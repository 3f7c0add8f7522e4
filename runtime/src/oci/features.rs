//! `features`: what this runtime implements, as runtime-spec's features JSON.

use serde_json::{json, Value};

use super::namespaces::KINDS;
use super::spec::OCI_VERSION;

pub fn features() -> Value {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let mut caps = caps;
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave",
            "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": {
            "io.snaprun.version": env!("CARGO_PKG_VERSION")
        }
    })
}
