//! Checks a config before anything is started, naming the field at fault.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::namespaces::Plan;
use super::spec::{Hooks, Process, Spec};
use super::{caps, process, seccomp};

/// What create needs from a checked config.
pub struct Checked {
    pub rootfs: PathBuf,
    pub plan: Plan,
}

fn filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// Checks a process (the container's, or an exec's).
pub fn check_process(p: &Process) -> Result<()> {
    if p.args.is_empty() {
        return Err(Error::invalid("process.args", "must not be empty"));
    }
    if !p.cwd.starts_with('/') {
        return Err(Error::invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", p.cwd),
        ));
    }
    for (i, e) in p.env.iter().enumerate() {
        if !e.contains('=') {
            return Err(Error::invalid(
                format!("process.env[{i}]"),
                format!("{e:?} is not NAME=VALUE"),
            ));
        }
    }
    process::check_rlimits(&p.rlimits)?;
    if let Some(c) = &p.capabilities {
        caps::parse(c)?;
    }
    Ok(())
}

fn check_hooks(h: &Hooks) -> Result<()> {
    let lists = [
        ("prestart", &h.prestart),
        ("createRuntime", &h.create_runtime),
        ("createContainer", &h.create_container),
        ("startContainer", &h.start_container),
        ("poststart", &h.poststart),
        ("poststop", &h.poststop),
    ];
    for (name, list) in lists {
        for (i, hook) in list.iter().enumerate() {
            if !hook.path.starts_with('/') {
                return Err(Error::invalid(
                    format!("hooks.{name}[{i}].path"),
                    format!("{:?} is not an absolute path", hook.path),
                ));
            }
        }
    }
    Ok(())
}

pub fn check(spec: &Spec, bundle: &Path) -> Result<Checked> {
    if !spec.oci_version.starts_with("1.") {
        return Err(Error::invalid(
            "ociVersion",
            format!("unsupported version {:?} (1.x wanted)", spec.oci_version),
        ));
    }
    let Some(root) = &spec.root else {
        return Err(Error::invalid("root", "missing (root.path is required)"));
    };
    if root.path.is_empty() {
        return Err(Error::invalid("root.path", "must not be empty"));
    }
    let rootfs = bundle.join(&root.path);
    if !rootfs.is_dir() {
        return Err(Error::invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| Error::io("resolve root.path", &rootfs, e))?;
    let Some(p) = &spec.process else {
        return Err(Error::invalid("process", "missing"));
    };
    check_process(p)?;
    let linux = spec.linux.clone().unwrap_or_default();
    let plan = Plan::from_spec(&linux.namespaces)?;
    if !plan.has("mount") {
        return Err(Error::invalid(
            "linux.namespaces",
            "a mount namespace is required",
        ));
    }
    if spec.hostname.as_deref().is_some_and(|h| !h.is_empty()) && !plan.has("uts") {
        return Err(Error::invalid(
            "hostname",
            "cannot set the hostname without a private uts namespace",
        ));
    }
    if plan.new.contains(nix::sched::CloneFlags::CLONE_NEWUSER)
        && (linux.uid_mappings.is_empty() || linux.gid_mappings.is_empty())
    {
        return Err(Error::invalid(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    let fs = filesystems();
    for (i, m) in spec.mounts.iter().enumerate() {
        if !m.destination.starts_with('/') {
            return Err(Error::invalid(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination),
            ));
        }
        let bind = m.options.iter().any(|o| o == "bind" || o == "rbind");
        let kind = m.kind.as_deref().unwrap_or("");
        let known = match kind {
            "bind" => true,
            "" | "none" => bind,
            "cgroup" => true,
            k => bind || fs.iter().any(|f| f == k),
        };
        if !known {
            return Err(Error::invalid(
                format!("mounts[{i}].type"),
                format!("unknown mount type {kind:?} (not in /proc/filesystems)"),
            ));
        }
    }
    if let Some(h) = &spec.hooks {
        check_hooks(h)?;
    }
    let ignored = [
        ("process.apparmorProfile", p.apparmor_profile.as_deref()),
        ("process.selinuxLabel", p.selinux_label.as_deref()),
        ("linux.mountLabel", linux.mount_label.as_deref()),
    ];
    for (field, value) in ignored {
        if value.is_some_and(|v| !v.is_empty()) {
            tracing::warn!(field, "not supported: ignored");
        }
    }
    if let Some(s) = &linux.seccomp {
        seccomp::build(s)?;
    }
    Ok(Checked { rootfs, plan })
}
