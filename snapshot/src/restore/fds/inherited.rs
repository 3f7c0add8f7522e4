//! Inherited descriptions (`FileKind::Inherited`, a container's stdio):
//! the restorer hands over descriptions of its own in their place
//! (`RestoreOptions::inherit_fds`). Every stub is a fork of the restorer
//! (or of the container's init, itself a fork of it), so it already holds
//! them at the restorer's fd numbers. Before the stub's fds are closed,
//! the ones this process needs are moved above every fd it will have
//! (`F_DUPFD_CLOEXEC`), kept through the close, dup'd to their places
//! like any description, and closed at the end.

use crate::image::{FileKind, ProcessImage};
use crate::sys::remote::Remote;

use super::RestoreError;

/// The parked descriptions of one process: (the snapshot's fd, where the
/// stub holds a copy of what stands for it).
#[derive(Default)]
pub struct Inherited {
    parked: Vec<(i32, u64)>,
}

impl Inherited {
    /// Parks, in the stub, what stands for each inherited description of
    /// `p`. `given` maps the snapshot's fd to the stub's fd.
    pub fn park(
        remote: &mut dyn Remote,
        p: &ProcessImage,
        given: &[(i32, i32)],
    ) -> Result<Self, RestoreError> {
        let above = p.fds.iter().map(|f| f.fd + 1).max().unwrap_or(0).max(3) as u64;
        let mut parked = Vec::new();
        for f in p.files.iter().filter(|f| f.shared.is_none()) {
            let FileKind::Inherited { fd } = f.kind else {
                continue;
            };
            let Some(&(_, from)) = given.iter().find(|(k, _)| *k == fd) else {
                return Err(RestoreError::State {
                    pid: p.pid,
                    reason: format!(
                        "the snapshot's fd {fd} is to be inherited from the restorer, which gives none for it"
                    ),
                });
            };
            let at = remote.syscall(
                &format!("fcntl(F_DUPFD_CLOEXEC) of the restorer's fd {from} (inherited fd {fd})"),
                libc::SYS_fcntl,
                &[from as u64, libc::F_DUPFD_CLOEXEC as u64, above],
            )?;
            parked.push((fd, at));
        }
        Ok(Self { parked })
    }

    /// The stub's fds to keep when it closes the others.
    pub fn fds(&self) -> Vec<u64> {
        self.parked.iter().map(|&(_, at)| at).collect()
    }

    /// A new fd, in the target, for the snapshot's inherited fd `fd`.
    pub fn dup(&self, remote: &mut dyn Remote, fd: i32) -> Result<u64, RestoreError> {
        let at = self
            .parked
            .iter()
            .find(|(k, _)| *k == fd)
            .map(|&(_, at)| at)
            .ok_or_else(|| RestoreError::State {
                pid: remote.pid(),
                reason: format!("inherited fd {fd} was not parked"),
            })?;
        Ok(remote.syscall(
            &format!("fcntl(F_DUPFD_CLOEXEC) of inherited fd {fd}"),
            libc::SYS_fcntl,
            &[at, libc::F_DUPFD_CLOEXEC as u64, 0],
        )?)
    }

    /// Closes the parked copies once every fd is in place.
    pub fn close(self, remote: &mut dyn Remote) -> Result<(), RestoreError> {
        for (_, at) in self.parked {
            remote.syscall("close (parked inherited fd)", libc::SYS_close, &[at])?;
        }
        Ok(())
    }
}

/// Closes every fd the stub inherited but those in `keep`.
pub fn close_all_but(remote: &mut dyn Remote, keep: &[u64]) -> Result<(), RestoreError> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut from = 0u64;
    for k in keep {
        if k > from {
            remote.syscall("close_range", libc::SYS_close_range, &[from, k - 1, 0])?;
        }
        from = k + 1;
    }
    remote.syscall(
        "close_range",
        libc::SYS_close_range,
        &[from, u32::MAX as u64, 0],
    )?;
    Ok(())
}
