//! memfds: each created once in the target, filled and sealed, and kept
//! open (above every fd number to restore) while the mappings and fds that
//! use it are made; fds of a memfd are new opens of it through
//! `/proc/self/fd`, so they share its content as they did.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use crate::image::{Image, ProcessImage};
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;

const MFD_CLOEXEC: u64 = 1;
const MFD_ALLOW_SEALING: u64 = 2;

/// The memfds created in the target: inode at checkpoint → fd in the
/// target.
#[derive(Debug, Default)]
pub struct Memfds {
    fds: HashMap<u64, u64>,
}

impl Memfds {
    /// The target's fd of the memfd that had inode `inode`.
    pub fn get(&self, inode: u64) -> Option<u64> {
        self.fds.get(&inode).copied()
    }

    /// Closes the target's fds of the memfds; mappings and restored fds
    /// keep the memfds alive.
    pub fn close(self, remote: &mut dyn Remote) -> Result<(), RestoreError> {
        for fd in self.fds.into_values() {
            remote.syscall("close memfd", libc::SYS_close, &[fd])?;
        }
        Ok(())
    }
}

/// Creates every memfd of `p` in the target: `memfd_create` with its name,
/// lifted above the fd numbers to restore, filled from the image (by the
/// restorer, through `/proc/PID/fd/N`), given its mode and sealed.
pub fn create_memfds(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    p: &ProcessImage,
) -> Result<Memfds, RestoreError> {
    let pid = remote.pid();
    let high = p.fds.iter().map(|f| f.fd + 1).max().unwrap_or(0).max(3);
    let mut out = Memfds::default();
    for m in &p.memfds {
        let what = format!("memfd {:?} (inode {})", m.name, m.inode);
        let name = scratch.put_cstr(remote, &m.name)?;
        let r = remote.syscall(
            &format!("{what}: memfd_create"),
            libc::SYS_memfd_create,
            &[name, MFD_CLOEXEC | MFD_ALLOW_SEALING],
        );
        scratch.reset();
        let new = r?;
        let fd = remote.syscall(
            &format!("{what}: F_DUPFD_CLOEXEC"),
            libc::SYS_fcntl,
            &[new, libc::F_DUPFD_CLOEXEC as u64, high as u64],
        )?;
        remote.syscall("close", libc::SYS_close, &[new])?;
        out.fds.insert(m.inode, fd);

        let path = format!("/proc/{pid}/fd/{fd}");
        let io = |source| RestoreError::Io {
            what: format!("{what}: filling through {path}"),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(m.size).map_err(io)?;
        let mut buf = Vec::new();
        for run in &m.runs {
            image.read_run(run, &mut buf)?;
            let len = (m.size.saturating_sub(run.vma_offset)).min(buf.len() as u64) as usize;
            file.write_all_at(&buf[..len], run.vma_offset).map_err(io)?;
        }
        drop(file);
        remote.syscall(
            &format!("{what}: fchmod {:o}", m.mode),
            libc::SYS_fchmod,
            &[fd, m.mode as u64],
        )?;
        if m.seals != 0 {
            remote.syscall(
                &format!("{what}: F_ADD_SEALS {:#x}", m.seals),
                libc::SYS_fcntl,
                &[fd, libc::F_ADD_SEALS as u64, m.seals as u64],
            )?;
        }
    }
    Ok(out)
}
