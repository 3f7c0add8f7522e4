//! containerd's checkpoint options, as `snaprun checkpoint` flags.
//!
//! containerd sends runc's `containerd.runc.v1.CheckpointOptions` (`ctr
//! containers checkpoint --task` always does, with `file_locks` set; `ctr
//! task checkpoint` sends none for a runtime other than runc's). Each option
//! is either passed on with runc's flag name, whose meaning snaprun keeps,
//! or refused naming the option: none is dropped silently.
//!
//! | option | snaprun |
//! | --- | --- |
//! | `exit` | no `--leave-running`: the container is killed and deleted |
//! | `open_tcp` | `--tcp-established`: accepted, and an open TCP connection is still refused (snaprun cannot keep one) |
//! | `external_unix_sockets` | `--ext-unix-sk`: accepted, and a unix socket connected outside the container is still refused |
//! | `terminal` | `--shell-job`: accepted, and a container with a terminal is still refused |
//! | `file_locks` | `--file-locks`: accepted, and a file lock held in the container is still refused |
//! | `empty_namespaces` | `--empty-ns NS`: what snaprun always does (namespaces are made afresh from the bundle) |
//! | `cgroups_mode` | `soft` (runc's default) or empty; `full`, `strict`, `ignore` are refused: restore sets the cgroups from the bundle |
//! | `image_path` | must be empty or the request's path: containerd archives that path for this runtime |
//! | `work_path` | `--work-path` (snaprun keeps no work files: its log stays in the bundle) |

use std::path::PathBuf;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::CheckpointOptions;

use crate::error::{Error, Result};

/// The options' protobuf type.
pub const OPTIONS_TYPE: &str = "containerd.runc.v1.CheckpointOptions";

/// A checkpoint containerd asked for, as snaprun will run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The image directory (`--image-path`).
    pub image: PathBuf,
    /// End the container afterwards (`exit`).
    pub exit: bool,
    /// runc's flags besides `--image-path` and `--leave-running`.
    pub flags: Vec<String>,
}

impl Plan {
    /// `snaprun checkpoint` arguments before the container id.
    pub fn args(&self) -> Result<Vec<String>> {
        let image = self.image.to_str().ok_or_else(|| {
            Error::invalid(
                "checkpoint path",
                format!("{} is not UTF-8", self.image.display()),
            )
        })?;
        let mut args = vec![
            "checkpoint".to_string(),
            "--image-path".into(),
            image.into(),
        ];
        if !self.exit {
            args.push("--leave-running".into());
        }
        args.extend(self.flags.iter().cloned());
        Ok(args)
    }
}

/// Decodes the request's options (none: runc's defaults, the container
/// left running).
fn decode(options: Option<&Any>) -> Result<CheckpointOptions> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(CheckpointOptions::default());
    };
    if !any.type_url.ends_with(OPTIONS_TYPE) {
        return Err(Error::invalid(
            "checkpoint options",
            format!(
                "type {} is not {OPTIONS_TYPE}, the only one this shim reads",
                any.type_url
            ),
        ));
    }
    CheckpointOptions::parse_from_bytes(&any.value)
        .map_err(|e| Error::invalid(OPTIONS_TYPE, e.to_string()))
}

/// What `snaprun checkpoint` does for container ID, checkpointed into PATH
/// (containerd's directory) with OPTIONS.
pub fn plan(id: &str, path: &str, options: Option<&Any>) -> Result<Plan> {
    let o = decode(options)?;
    let refuse = |option: &str, reason: String| {
        Err(Error::invalid(
            format!("checkpoint option {option} for container {id}"),
            reason,
        ))
    };
    let image = match (path, o.image_path.as_str()) {
        ("", "") => return refuse("path", "containerd gave no checkpoint directory".into()),
        ("", dir) | (dir, "") => dir,
        (dir, other) if dir == other => dir,
        (dir, other) => {
            return refuse(
                "image_path",
                format!(
                    "{other:?}: containerd archives the checkpoint from {dir:?} for this runtime \
                     (it honours image_path only for io.containerd.runc.*); leave it empty"
                ),
            )
        }
    };
    match o.cgroups_mode.as_str() {
        "" | "soft" => {}
        mode => {
            return refuse(
                "cgroups_mode",
                format!(
                    "{mode:?} is not supported: snaprun saves no cgroup properties; restore sets \
                     the container's cgroups from its bundle's config (runc's \"soft\")"
                ),
            )
        }
    }
    let mut flags = Vec::new();
    for (set, flag) in [
        (o.open_tcp, "--tcp-established"),
        (o.external_unix_sockets, "--ext-unix-sk"),
        (o.terminal, "--shell-job"),
        (o.file_locks, "--file-locks"),
    ] {
        if set {
            flags.push(flag.to_string());
        }
    }
    for ns in &o.empty_namespaces {
        flags.extend(["--empty-ns".to_string(), ns.clone()]);
    }
    if !o.cgroups_mode.is_empty() {
        flags.extend(["--manage-cgroups-mode".to_string(), o.cgroups_mode.clone()]);
    }
    if !o.work_path.is_empty() {
        flags.extend(["--work-path".to_string(), o.work_path.clone()]);
    }
    Ok(Plan {
        image: PathBuf::from(image),
        exit: o.exit,
        flags,
    })
}

/// OPTIONS as containerd packs them (for tests and clients).
pub fn pack(options: &CheckpointOptions) -> Result<Any> {
    let value = options
        .write_to_bytes()
        .map_err(|e| Error::invalid(OPTIONS_TYPE, e.to_string()))?;
    Ok(Any {
        type_url: OPTIONS_TYPE.to_string(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(o: CheckpointOptions) -> Any {
        pack(&o).unwrap()
    }

    #[test]
    fn no_options_leave_the_container_running() {
        let p = plan("c1", "/tmp/ck", None).unwrap();
        assert_eq!(
            p.args().unwrap(),
            ["checkpoint", "--image-path", "/tmp/ck", "--leave-running"]
        );
    }

    #[test]
    fn exit_and_runc_flags() {
        let o = CheckpointOptions {
            exit: true,
            open_tcp: true,
            external_unix_sockets: true,
            terminal: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "soft".into(),
            work_path: "/tmp/w".into(),
            ..Default::default()
        };
        let p = plan("c1", "/tmp/ck", Some(&packed(o))).unwrap();
        assert!(p.exit);
        assert_eq!(
            p.args().unwrap(),
            [
                "checkpoint",
                "--image-path",
                "/tmp/ck",
                "--tcp-established",
                "--ext-unix-sk",
                "--shell-job",
                "--file-locks",
                "--empty-ns",
                "network",
                "--manage-cgroups-mode",
                "soft",
                "--work-path",
                "/tmp/w"
            ]
        );
    }

    #[test]
    fn options_snaprun_cannot_honour_are_refused_by_name() {
        for mode in ["full", "strict", "ignore"] {
            let o = CheckpointOptions {
                cgroups_mode: mode.into(),
                ..Default::default()
            };
            let e = plan("c1", "/tmp/ck", Some(&packed(o)))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cgroups_mode") && e.contains("c1") && e.contains(mode),
                "{e}"
            );
        }
        let o = CheckpointOptions {
            image_path: "/srv/elsewhere".into(),
            ..Default::default()
        };
        let e = plan("c1", "/tmp/ck", Some(&packed(o)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("image_path") && e.contains("/srv/elsewhere"),
            "{e}"
        );
        // The same directory twice is fine; image_path alone gives it.
        let o = CheckpointOptions {
            image_path: "/tmp/ck".into(),
            ..Default::default()
        };
        assert_eq!(
            plan("c1", "/tmp/ck", Some(&packed(o.clone())))
                .unwrap()
                .image,
            PathBuf::from("/tmp/ck")
        );
        assert_eq!(
            plan("c1", "", Some(&packed(o))).unwrap().image,
            PathBuf::from("/tmp/ck")
        );
        let e = plan("c1", "", None).unwrap_err().to_string();
        assert!(e.contains("no checkpoint directory"), "{e}");
    }

    #[test]
    fn other_option_types_are_refused() {
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: Vec::new(),
            ..Default::default()
        };
        let e = plan("c1", "/tmp/ck", Some(&any)).unwrap_err().to_string();
        assert!(e.contains("containerd.runc.v1.Options"), "{e}");
        // typeurl's full form is accepted.
        let mut any = packed(CheckpointOptions {
            exit: true,
            ..Default::default()
        });
        any.type_url = format!("types.containerd.io/{OPTIONS_TYPE}");
        assert!(plan("c1", "/tmp/ck", Some(&any)).unwrap().exit);
    }
}
