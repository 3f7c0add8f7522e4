//! epoll instances: created empty with the other fds, and filled in a
//! second pass once every fd exists, each registration with its events and
//! data under the fd number it was registered with.

use crate::image::{FileKind, ProcessImage};
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;
use super::fd_err;

/// A new, empty epoll instance (restoring fd `fd`).
pub(super) fn create(remote: &mut dyn Remote, fd: i32) -> Result<u64, RestoreError> {
    Ok(remote.syscall(
        &format!("fd {fd}: epoll_create1"),
        libc::SYS_epoll_create1,
        &[0],
    )?)
}

/// Registers every epoll target again; runs after all fds are in place.
/// A registration whose fd number was closed is made through a temporary
/// duplicate at that number, so it keeps its number; one whose number now
/// names another file is made under another fd of its file.
pub(super) fn register_all(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    p: &ProcessImage,
) -> Result<(), RestoreError> {
    let pid = remote.pid();
    for f in &p.files {
        let FileKind::Epoll { targets } = &f.kind else {
            continue;
        };
        let Some(efd) = p.fds.iter().find(|d| d.file == f.id).map(|d| d.fd) else {
            continue;
        };
        for t in targets {
            let holders: Vec<i32> = p
                .fds
                .iter()
                .filter(|d| d.file == t.file)
                .map(|d| d.fd)
                .collect();
            let Some(&holder) = holders.first() else {
                return Err(fd_err(
                    pid,
                    efd,
                    format!("epoll target fd {}: no fd holds file {}", t.fd, t.file),
                ));
            };
            let what = format!("fd {efd}: epoll_ctl(ADD) fd {}", t.fd);
            let (key, temporary) = if holders.contains(&t.fd) {
                (t.fd, false)
            } else if !p.fds.iter().any(|d| d.fd == t.fd) {
                remote.syscall(
                    &format!("{what}: dup3 from fd {holder}"),
                    libc::SYS_dup3,
                    &[holder as u64, t.fd as u64, libc::O_CLOEXEC as u64],
                )?;
                (t.fd, true)
            } else {
                tracing::warn!(
                    pid,
                    efd,
                    tfd = t.fd,
                    fd = holder,
                    "epoll target's fd number now names another file; registered under another fd of its file"
                );
                (holder, false)
            };
            // struct epoll_event is packed on x86_64: u32 events, u64 data.
            let mut ev = t.events.to_ne_bytes().to_vec();
            ev.extend_from_slice(&t.data.to_ne_bytes());
            let at = scratch.put(remote, &ev)?;
            let r = remote.syscall(
                &what,
                libc::SYS_epoll_ctl,
                &[efd as u64, libc::EPOLL_CTL_ADD as u64, key as u64, at],
            );
            scratch.reset();
            r?;
            if temporary {
                remote.syscall("close", libc::SYS_close, &[key as u64])?;
            }
        }
    }
    Ok(())
}
