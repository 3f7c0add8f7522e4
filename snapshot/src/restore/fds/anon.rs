//! Anonymous-inode files: created by their own syscall and given back the
//! state fdinfo showed.

use crate::image::{FileKind, OpenFile};
use crate::sys::remote::{self, Remote, Scratch};

use super::super::RestoreError;
use super::{epoll, inotify, timerfd};

/// Creates the anonymous-inode file `file` (restoring fd `fd`) in the
/// target; the new fd.
pub(super) fn create(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    file: &OpenFile,
) -> Result<u64, RestoreError> {
    let flags = file.flags as i32;
    match &file.kind {
        FileKind::EventFd { count, semaphore } => {
            eventfd(remote, scratch, fd, flags, *count, *semaphore)
        }
        FileKind::SignalFd { mask } => signalfd(remote, scratch, fd, flags, *mask),
        FileKind::TimerFd { .. } => timerfd::timerfd(remote, scratch, fd, flags, &file.kind),
        FileKind::Epoll { .. } => epoll::create(remote, fd),
        FileKind::Inotify { watches } => inotify::inotify(remote, scratch, fd, flags, watches),
        other => unreachable!("not an anonymous-inode file: {other:?}"),
    }
}

/// An eventfd with its 64-bit counter, semaphore mode and O_NONBLOCK.
fn eventfd(
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

/// A signalfd accepting the signals of `mask`, with O_NONBLOCK.
fn signalfd(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    mask: u64,
) -> Result<u64, RestoreError> {
    let at = scratch.put(remote, &mask.to_ne_bytes())?;
    let r = remote.syscall(
        &format!("fd {fd}: signalfd mask {mask:#x}"),
        libc::SYS_signalfd4,
        &[u64::MAX, at, 8, (flags & libc::O_NONBLOCK) as u64],
    );
    scratch.reset();
    Ok(r?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn signalfd_gets_its_mask_and_nonblock() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x1000);
        let file = OpenFile {
            id: 0,
            flags: (libc::O_RDWR | libc::O_NONBLOCK) as u32,
            kind: FileKind::SignalFd { mask: 0x200 },
            shared: None,
        };
        create(&mut fake, &mut scratch, 5, &file).unwrap();
        let (what, nr, args) = &fake.calls[0];
        assert_eq!(what, "fd 5: signalfd mask 0x200");
        assert_eq!(*nr, libc::SYS_signalfd4);
        assert_eq!(args[0], u64::MAX, "a new signalfd, not an update of one");
        assert_eq!(fake.memory[&args[1]], 0x200u64.to_ne_bytes());
        assert_eq!((args[2], args[3]), (8, libc::O_NONBLOCK as u64));
    }
}
