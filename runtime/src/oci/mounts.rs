//! The mounts of config.json: option parsing, paths kept inside the rootfs,
//! and mounting each entry (proc, sysfs, tmpfs, devpts, mqueue, cgroup, bind).

use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::cgroups::Cgroup;
use super::error::{Error, Result};
use super::spec::Mount;

/// Mount flags and filesystem data parsed from a mount's `options`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    /// Flags the option list clears (`rw`, `suid`...), for remounts.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
        recursive: false,
    };
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation
                    .push(propagation(opt).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            "tmpcopyup" => {
                tracing::warn!("mount option tmpcopyup is not supported: ignored");
                continue;
            }
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
        o.cleared.insert(clear);
    }
    o
}

/// A propagation name (`rslave`, `private`...) as mount flags.
pub fn propagation(name: &str) -> Option<MsFlags> {
    let rec = name.starts_with('r') && name != "rw";
    let base = match name.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if rec { base | MsFlags::MS_REC } else { base })
}

/// ROOT joined with PATH, resolving symlinks as if ROOT were `/` so that the
/// result never leaves ROOT. The result may not exist.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        match comp.components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) => continue,
            Some(Component::ParentDir) => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(&out).join(&comp);
        match fs::read_link(&candidate) {
            Ok(target) if links < 255 => {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                pending.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            _ => out.push(comp),
        }
    }
    root.join(out)
}

fn sys(what: String) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::sys(what, e)
}

fn mkdir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("create mount point", path, e))
}

/// Mounts entry M (index I in `mounts`) inside ROOTFS.
pub fn mount_entry(i: usize, m: &Mount, rootfs: &Path, bundle: &Path, cg: &Cgroup) -> Result<()> {
    let field = format!("mounts[{i}]");
    if !m.destination.starts_with('/') {
        return Err(Error::invalid(
            format!("{field}.destination"),
            format!("{:?} is not an absolute path", m.destination),
        ));
    }
    let dest = secure_join(rootfs, Path::new(&m.destination));
    let o = parse_options(&m.options);
    let kind = m.kind.as_deref().unwrap_or("");
    let what = |verb: &str| format!("{field}: {verb} {} on {}", kind, m.destination);
    if o.bind || kind == "bind" {
        let src = m.source.as_deref().unwrap_or("");
        let src = if Path::new(src).is_absolute() {
            PathBuf::from(src)
        } else {
            bundle.join(src)
        };
        let meta = fs::metadata(&src).map_err(|e| Error::io("stat bind source", &src, e))?;
        if meta.is_dir() {
            mkdir_all(&dest)?;
        } else {
            if let Some(parent) = dest.parent() {
                mkdir_all(parent)?;
            }
            if !dest.exists() {
                fs::File::create(&dest).map_err(|e| Error::io("create mount point", &dest, e))?;
            }
        }
        let mut flags = MsFlags::MS_BIND;
        if o.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(&src), &dest, None::<&str>, flags, None::<&str>).map_err(sys(what("bind")))?;
        if !o.flags.is_empty() {
            remount(&dest, o.flags).map_err(sys(what("remount")))?;
        }
    } else if kind == "cgroup" {
        mkdir_all(&dest)?;
        mount_cgroup(&dest, &o, cg).map_err(sys(what("mount")))?;
    } else {
        mkdir_all(&dest)?;
        let data = o.data.join(",");
        let data = (!data.is_empty()).then_some(data.as_str());
        let res = mount(m.source.as_deref(), &dest, Some(kind), o.flags, data);
        match res {
            // Without its own network namespace a container cannot mount
            // sysfs: give it the host's, read-only if asked.
            Err(nix::Error::EPERM) if kind == "sysfs" => {
                mount(
                    Some("/sys"),
                    &dest,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys(what("bind /sys for")))?;
                remount(&dest, o.flags).map_err(sys(what("remount")))?;
            }
            r => r.map_err(sys(what("mount")))?,
        }
    }
    for p in &o.propagation {
        mount(None::<&str>, &dest, None::<&str>, *p, None::<&str>)
            .map_err(sys(what("set propagation of")))?;
    }
    Ok(())
}

/// Remounts a bind mount with FLAGS, keeping the flags a user namespace may
/// not clear (those already locked on the mount).
pub fn remount(dest: &Path, flags: MsFlags) -> nix::Result<()> {
    let locked = nix::sys::statvfs::statvfs(dest)
        .map(|s| {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mount(
        None::<&str>,
        dest,
        None::<&str>,
        flags | locked | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None::<&str>,
    )
}

/// A `cgroup` mount: cgroup2 on a v2 host; on a v1 host a tmpfs holding a
/// bind mount of the container's own directory in every hierarchy.
fn mount_cgroup(dest: &Path, o: &Options, cg: &Cgroup) -> nix::Result<()> {
    if cg.dirs.len() == 1 && cg.dirs[0].v2 {
        return mount(
            Some("cgroup2"),
            dest,
            Some("cgroup2"),
            o.flags,
            None::<&str>,
        );
    }
    let base = o.flags & !MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), dest, Some("tmpfs"), base, Some("mode=755"))?;
    for d in &cg.dirs {
        if d.hierarchy.is_empty() {
            continue;
        }
        let sub = dest.join(&d.hierarchy);
        fs::create_dir_all(&sub)
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        mount(
            Some(&d.path),
            &sub,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        remount(&sub, o.flags)?;
    }
    if o.flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            dest,
            None::<&str>,
            o.flags | MsFlags::MS_REMOUNT,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rbind".into(),
            "rslave".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert!(o.bind && o.recursive);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert!(o.flags.is_empty());
    }

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        assert_eq!(secure_join(root, Path::new("/abs/x")), root.join("etc/x"));
        assert_eq!(secure_join(root, Path::new("/up/etc")), root.join("etc"));
        assert_eq!(secure_join(root, Path::new("/../../a")), root.join("a"));
    }
}
