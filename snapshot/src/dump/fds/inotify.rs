//! inotify instances: each watch from fdinfo (`inotify wd:N ino:I sdev:D
//! mask:M ... fhandle-bytes:B fhandle-type:T f_handle:H`). The watched file
//! is found again from its file handle (`open_by_handle_at`, on a mount of
//! its filesystem), and recorded by path.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::hex;
use crate::image::{FileKind, InotifyWatch};
use crate::sys::proc::FdInfo;

/// One `inotify` fdinfo line, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Watch {
    wd: i32,
    ino: u64,
    /// The kernel's dev_t: major << 20 | minor.
    sdev: u64,
    mask: u32,
    handle_type: i32,
    handle: Vec<u8>,
}

fn parse_watch(v: &str) -> Option<Watch> {
    let field = |name: &str| {
        v.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix(':'))
    };
    let hex_u64 = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
    let handle = hex::decode(field("f_handle")?).ok()?;
    if handle.len() as u64 != hex_u64("fhandle-bytes")? {
        return None;
    }
    Some(Watch {
        wd: field("wd")?.parse().ok()?,
        ino: hex_u64("ino")?,
        sdev: hex_u64("sdev")?,
        mask: u32::from_str_radix(field("mask")?, 16).ok()?,
        handle_type: i32::from_str_radix(field("fhandle-type")?, 16).ok()?,
        handle,
    })
}

/// The watches of an inotify fd of `pid`, each with the path of its file.
pub(super) fn inotify(pid: i32, info: &FdInfo) -> Result<FileKind, String> {
    let mut watches = Vec::new();
    // The line "inotify wd:N ..." is split at its first colon.
    for v in info.fields("inotify wd") {
        let w = parse_watch(&format!("wd:{v}"))
            .ok_or_else(|| format!("inotify: bad watch line {v:?}"))?;
        let path = watched_path(pid, &w)
            .map_err(|e| format!("inotify watch {} (inode {}): {e}", w.wd, w.ino))?;
        watches.push(InotifyWatch {
            wd: w.wd,
            path,
            mask: w.mask,
        });
    }
    watches.sort_by_key(|w| w.wd);
    Ok(FileKind::Inotify { watches })
}

/// Opens the watched file from its handle and returns its path, checked
/// to lead to the same inode.
fn watched_path(pid: i32, w: &Watch) -> Result<String, String> {
    let (major, minor) = (w.sdev >> 20, w.sdev & 0xf_ffff);
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("reading /proc/{pid}/mountinfo: {e}"))?;
    let dev = format!("{major}:{minor}");
    let mount_point = mountinfo
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&dev.as_str())).then(|| f.get(4).map(|m| m.to_string()))?
        })
        .ok_or_else(|| format!("no mount of device {dev}"))?;
    let mount = std::fs::File::open(format!("/proc/{pid}/root{mount_point}"))
        .map_err(|e| format!("opening mount {mount_point}: {e}"))?;
    // struct file_handle: u32 handle_bytes, i32 handle_type, then the bytes.
    let mut fh = Vec::with_capacity(8 + w.handle.len());
    fh.extend_from_slice(&(w.handle.len() as u32).to_ne_bytes());
    fh.extend_from_slice(&w.handle_type.to_ne_bytes());
    fh.extend_from_slice(&w.handle);
    // SAFETY: open_by_handle_at reads the handle struct, which outlives the
    // call, and returns a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            fh.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "open_by_handle_at on {mount_point}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    let file = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let path = std::fs::read_link(&link)
        .map_err(|e| format!("reading {link}: {e}"))?
        .to_string_lossy()
        .into_owned();
    let same = std::fs::metadata(&path).is_ok_and(|m| {
        let fd_meta = std::fs::metadata(&link);
        fd_meta.is_ok_and(|f| f.dev() == m.dev() && f.ino() == m.ino()) && m.ino() == w.ino
    });
    if !same {
        return Err(format!("no path leads to it (last known as {path})"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_lines() {
        let w = parse_watch(
            "wd:2 ino:99c005 sdev:fe00000 mask:4000200 ignored_mask:0 fhandle-bytes:8 \
             fhandle-type:1 f_handle:05c099005d38693d",
        )
        .unwrap();
        assert_eq!(
            w,
            Watch {
                wd: 2,
                ino: 0x99c005,
                sdev: 0xfe0_0000,
                mask: 0x400_0200,
                handle_type: 1,
                handle: vec![0x05, 0xc0, 0x99, 0x00, 0x5d, 0x38, 0x69, 0x3d],
            }
        );
        assert_eq!(
            parse_watch("wd:2 ino:1 sdev:0 mask:1 fhandle-bytes:4 fhandle-type:1 f_handle:00"),
            None,
            "handle shorter than its length"
        );
    }
}
