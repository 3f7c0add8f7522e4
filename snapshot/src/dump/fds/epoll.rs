//! epoll instances: each registration (fd number, events, data) from
//! fdinfo, and the open file behind it, found with
//! `kcmp(KCMP_EPOLL_TFD)` since the fd number it was registered with may
//! since have been closed or given to another file.

use crate::image::{EpollTarget, Fd, FileKind, OpenFile};
use crate::sys::proc::{parse_epoll_entry, FdInfo};

use super::super::DumpError;

/// Stands for "not resolved yet" in [`EpollTarget::file`] between
/// [`epoll`] and [`resolve_targets`].
const UNRESOLVED: u32 = u32::MAX;

/// The registrations of an epoll fd, their files still to be resolved.
pub(super) fn epoll(info: &FdInfo) -> Result<FileKind, String> {
    let targets = info
        .fields("tfd")
        .map(|v| {
            let e = parse_epoll_entry(v).ok_or_else(|| format!("epoll: bad tfd line {v:?}"))?;
            Ok(EpollTarget {
                fd: e.tfd,
                file: UNRESOLVED,
                events: e.events,
                data: e.data,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(FileKind::Epoll { targets })
}

/// `kcmp(KCMP_EPOLL_TFD)`: whether `pid`'s `fd` is the file registered in
/// epoll `efd` as the `toff`-th registration with fd number `tfd`.
fn registered_file_is(pid: i32, fd: i32, efd: i32, tfd: i32, toff: u32) -> bool {
    const KCMP_EPOLL_TFD: i32 = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: kcmp reads the slot struct, which outlives the call.
    unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fd, &slot) == 0 }
}

/// Fills in which open file each epoll registration is: the file at its
/// fd number when that is still the one, else any fd holding it. A file
/// that no fd of the process holds (kept open elsewhere) is refused.
pub(super) fn resolve_targets(
    pid: i32,
    files: &mut [OpenFile],
    fds: &[Fd],
) -> Result<(), DumpError> {
    for f in files.iter_mut() {
        let id = f.id;
        let FileKind::Epoll { targets } = &mut f.kind else {
            continue;
        };
        let Some(efd) = fds.iter().find(|d| d.file == id).map(|d| d.fd) else {
            continue;
        };
        for i in 0..targets.len() {
            let tfd = targets[i].fd;
            let toff = targets[..i].iter().filter(|t| t.fd == tfd).count() as u32;
            let candidates = fds
                .iter()
                .filter(|d| d.fd == tfd)
                .chain(fds.iter().filter(|d| d.fd != tfd));
            let found = candidates
                .into_iter()
                .find(|d| registered_file_is(pid, d.fd, efd, tfd, toff));
            match found {
                Some(d) => {
                    if d.fd != tfd {
                        tracing::debug!(
                            pid,
                            efd,
                            tfd,
                            fd = d.fd,
                            "epoll target found at another fd"
                        );
                    }
                    targets[i].file = d.file;
                }
                None => {
                    return Err(DumpError::Unsupported {
                        pid,
                        fd: efd,
                        what: format!(
                            "epoll watching a file registered as fd {tfd} that no fd of the \
                             process holds any more (it cannot be registered again)"
                        ),
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::parse_fdinfo;

    #[test]
    fn registrations_are_read_unresolved() {
        let info = parse_fdinfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n\
             tfd:        3 events: 80000019 data:       1234567890  pos:0 ino:40e sdev:10\n\
             tfd:        7 events: 40000000 data:                7  pos:0 ino:40e sdev:10\n",
        )
        .unwrap();
        let FileKind::Epoll { targets } = epoll(&info).unwrap() else {
            panic!()
        };
        assert_eq!(targets.len(), 2);
        assert_eq!(
            (targets[0].fd, targets[0].events, targets[0].data),
            (3, 0x8000_0019, 0x12_3456_7890)
        );
        assert_eq!(targets[1].file, UNRESOLVED);
        let bad = parse_fdinfo("flags:\t02\ntfd: x events: 1 data: 2\n").unwrap();
        assert!(epoll(&bad).unwrap_err().contains("bad tfd"));
    }
}
