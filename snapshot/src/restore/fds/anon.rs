//! Anonymous-inode files: created by their own syscall and given back the
//! state fdinfo showed.

use crate::sys::remote::{self, Remote, Scratch};

use super::super::RestoreError;

/// An eventfd with its 64-bit counter, semaphore mode and O_NONBLOCK.
pub(super) fn eventfd(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    count: u64,
    semaphore: bool,
) -> Result<u64, RestoreError> {
    let what = format!("fd {fd}: eventfd");
    let mut efd_flags = flags & libc::O_NONBLOCK;
    if semaphore {
        efd_flags |= libc::EFD_SEMAPHORE;
    }
    let new = remote.syscall(&what, libc::SYS_eventfd2, &[0, efd_flags as u64])?;
    // The counter is 64-bit; eventfd2's initial value only 32.
    if count > 0 {
        let what = format!("{what}: write counter");
        remote::write_all(remote, scratch, &what, new, &count.to_ne_bytes())?;
    }
    Ok(new)
}
