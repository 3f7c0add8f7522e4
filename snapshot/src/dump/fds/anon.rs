//! Anonymous-inode files (`anon_inode:[...]`), whose state the kernel shows
//! in fdinfo.

use crate::image::FileKind;
use crate::sys::proc::FdInfo;

use super::super::DumpError;
use super::{epoll, inotify, timerfd, PidFd};

/// The state of the `anon_inode:[KIND]` file at `pid`'s `fd`, or `None`
/// for the kinds snaprun cannot restore.
pub(super) fn dump_anon(
    pid: i32,
    fd: i32,
    kind: &str,
    info: &FdInfo,
    pidfd: &PidFd,
) -> Option<Result<FileKind, DumpError>> {
    let r = match kind {
        "eventfd" => eventfd(info),
        "signalfd" => signalfd(info),
        "timerfd" => match pidfd.get_fd(pid, fd) {
            Ok(dup) => timerfd::dump_timerfd(&dup),
            Err(e) => return Some(Err(e)),
        },
        "eventpoll" => epoll::epoll(info),
        "inotify" => inotify::inotify(pid, info),
        _ => return None,
    };
    Some(r.map_err(|reason| DumpError::Fd { pid, fd, reason }))
}

/// An eventfd's counter and mode, from its fdinfo.
fn eventfd(info: &FdInfo) -> Result<FileKind, String> {
    let field = |name: &str| info.field(name);
    let count = field("eventfd-count")
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("eventfd: no eventfd-count in fdinfo")?;
    // Kernels before 6.3 do not show the semaphore flag.
    let semaphore = match field("eventfd-semaphore") {
        Some(v) => v.trim() == "1",
        None => return Err("eventfd: this kernel does not show the semaphore flag".into()),
    };
    Ok(FileKind::EventFd { count, semaphore })
}

/// A signalfd's mask, from its fdinfo (`sigmask: 0000001000000200`).
fn signalfd(info: &FdInfo) -> Result<FileKind, String> {
    let mask = info
        .field("sigmask")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or("signalfd: no sigmask in fdinfo")?;
    Ok(FileKind::SignalFd { mask })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::parse_fdinfo;

    #[test]
    fn eventfd_counter_is_hex_and_semaphore_is_read() {
        let info = parse_fdinfo(
            "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\neventfd-count:        100000005\neventfd-id: 1\neventfd-semaphore: 1\n",
        )
        .unwrap();
        assert_eq!(
            eventfd(&info).unwrap(),
            FileKind::EventFd {
                count: 0x1_0000_0005,
                semaphore: true
            }
        );
        let old = parse_fdinfo("pos:\t0\nflags:\t02\neventfd-count: 0\n").unwrap();
        assert!(eventfd(&old).unwrap_err().contains("semaphore"));
    }

    #[test]
    fn signalfd_mask_is_hex() {
        let info = parse_fdinfo("pos:\t0\nflags:\t02000002\nsigmask:\t0000001000000200\n").unwrap();
        // SIGUSR1 (10) and SIGRTMIN+3 (37).
        assert_eq!(
            signalfd(&info).unwrap(),
            FileKind::SignalFd {
                mask: (1 << 9) | (1 << 36)
            }
        );
        assert!(signalfd(&parse_fdinfo("flags:\t02\n").unwrap()).is_err());
    }
}
