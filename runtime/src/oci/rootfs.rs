//! The container's root filesystem: the rootfs as a mount of its own,
//! devices and /dev symlinks, pivot_root (or chroot), masked and read-only
//! paths, the read-only root, sysctls. Runs in the init, in its mount
//! namespace.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, chown, chroot, fchdir, pivot_root, Gid, Uid};

use super::error::{Error, Result};
use super::mounts::{propagation, remount, secure_join};
use super::spec::{Device, Spec};

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |e| Error::sys(what, e)
}

/// Makes the host's mounts invisible to changes here (`rootfsPropagation`,
/// default rslave as runc) and makes ROOTFS a mount point of its own.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let prop = spec
        .linux
        .as_ref()
        .and_then(|l| l.rootfs_propagation.as_deref())
        .unwrap_or("rslave");
    let flags = propagation(prop).ok_or_else(|| {
        Error::invalid(
            "linux.rootfsPropagation",
            format!("unknown propagation {prop:?}"),
        )
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        flags | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make / of the new mount namespace private"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("bind mount the rootfs {}", rootfs.display())))
}

const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices and `linux.devices` in ROOTFS/dev (bind
/// mounts of the host's nodes in a user namespace, where mknod is refused),
/// and the standard /dev symlinks.
pub fn create_devices(spec: &Spec, rootfs: &Path, in_userns: bool) -> Result<()> {
    let mut devices: Vec<Device> = DEFAULT_DEVICES
        .iter()
        .map(|(p, ma, mi)| Device {
            kind: "c".into(),
            path: p.to_string(),
            major: *ma as i64,
            minor: *mi as i64,
            file_mode: Some(0o666),
            uid: Some(0),
            gid: Some(0),
        })
        .collect();
    if let Some(l) = &spec.linux {
        for (i, d) in l.devices.iter().enumerate() {
            if !d.path.starts_with("/dev/") {
                return Err(Error::invalid(
                    format!("linux.devices[{i}].path"),
                    format!("{:?} is not under /dev", d.path),
                ));
            }
            devices.retain(|x| x.path != d.path);
            devices.push(d.clone());
        }
    }
    for (i, d) in devices.iter().enumerate() {
        let dest = secure_join(rootfs, Path::new(&d.path));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
        }
        if in_userns {
            if !dest.exists() {
                fs::File::create(&dest).map_err(|e| Error::io("create", &dest, e))?;
            }
            mount(
                Some(d.path.as_str()),
                &dest,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!("bind mount device {}", d.path)))?;
            continue;
        }
        let kind = match d.kind.as_str() {
            "c" | "u" => SFlag::S_IFCHR,
            "b" => SFlag::S_IFBLK,
            "p" => SFlag::S_IFIFO,
            other => {
                return Err(Error::invalid(
                    format!("linux.devices[{i}].type"),
                    format!("unknown device type {other:?}"),
                ))
            }
        };
        let _ = fs::remove_file(&dest);
        let mode = d.file_mode.unwrap_or(0o666);
        mknod(
            &dest,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(d.major as u64, d.minor as u64),
        )
        .map_err(sys(format!("mknod {}", d.path)))?;
        // mknod applies the umask: set the mode exactly.
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io("chmod", &dest, e))?;
        chown(
            &dest,
            Some(Uid::from_raw(d.uid.unwrap_or(0))),
            Some(Gid::from_raw(d.gid.unwrap_or(0))),
        )
        .map_err(sys(format!("chown {}", d.path)))?;
    }
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let at = rootfs.join(link.trim_start_matches('/'));
        if at.symlink_metadata().is_ok() && link != "/dev/ptmx" {
            continue;
        }
        let _ = fs::remove_file(&at);
        symlink(target, &at).map_err(|e| Error::io("symlink", &at, e))?;
    }
    Ok(())
}

/// Switches the root to ROOTFS with pivot_root, and detaches the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
        .map_err(sys("open the old root"))?;
    let new = open(rootfs, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
        .map_err(sys(format!("open the rootfs {}", rootfs.display())))?;
    let res = (|| {
        fchdir(new).map_err(sys("chdir to the rootfs"))?;
        // With "." for both, the old root is stacked under the new one.
        pivot_root(".", ".").map_err(sys(format!("pivot_root to {}", rootfs.display())))?;
        fchdir(old).map_err(sys("chdir to the old root"))?;
        // Keep the unmount from reaching the host's mounts.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("make the old root a slave"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmount the old root"))?;
        chdir("/").map_err(sys("chdir to /"))
    })();
    let _ = nix::unistd::close(old.as_raw_fd());
    let _ = nix::unistd::close(new.as_raw_fd());
    res
}

/// `--no-pivot`: moves ROOTFS over / and chroots into it (for ramfs roots,
/// where pivot_root is refused).
pub fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(sys(format!("chdir to {}", rootfs.display())))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("move the rootfs to /"))?;
    chroot(".").map_err(sys("chroot"))?;
    chdir("/").map_err(sys("chdir to /"))
}

/// Hides `linux.maskedPaths`: /dev/null over files, an empty read-only
/// tmpfs over directories. Paths that do not exist are skipped.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let Ok(meta) = fs::metadata(p) else { continue };
        let res = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        res.map_err(sys(format!("linux.maskedPaths: mask {p}")))?;
    }
    Ok(())
}

/// Makes `linux.readonlyPaths` read-only bind mounts of themselves.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        if fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(format!("linux.readonlyPaths: bind {p}")))?;
        remount(Path::new(p), MsFlags::MS_RDONLY | MsFlags::MS_REC)
            .map_err(sys(format!("linux.readonlyPaths: make {p} read-only")))?;
    }
    Ok(())
}

/// `root.readonly`: remounts / read-only.
pub fn readonly_root() -> Result<()> {
    remount(Path::new("/"), MsFlags::MS_RDONLY).map_err(sys("root.readonly: remount / read-only"))
}

/// Writes `linux.sysctl` under /proc/sys.
pub fn sysctls(spec: &Spec) -> Result<()> {
    let Some(l) = &spec.linux else { return Ok(()) };
    for (key, value) in &l.sysctl {
        if key.contains("..") || key.contains('/') {
            return Err(Error::invalid(format!("linux.sysctl.{key}"), "bad key"));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value).map_err(|e| Error::io("linux.sysctl: write", path, e))?;
    }
    Ok(())
}
