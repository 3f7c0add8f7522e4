//! Unix socket names at restore: the `sockaddr_un` of a name, and binding
//! one, with the socket file left behind by the checkpointed process.

use crate::hex;
use crate::image::{UnixName, UnixSocket};
use crate::sys::remote::{Remote, Scratch};
use crate::sys::sock_diag;

use super::super::RestoreError;
use super::socket::with_address;
use super::state_err;

/// The offset of `st_mode` in x86-64 `struct stat`, and its size.
const STAT_MODE_OFFSET: usize = 24;
const STAT_SIZE: usize = 144;

/// `sockaddr_un` bytes for a name.
pub fn unix_sockaddr(name: &UnixName) -> Result<Vec<u8>, String> {
    let mut b = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    match name {
        UnixName::Path(p) => {
            b.extend_from_slice(p.as_bytes());
            b.push(0);
        }
        UnixName::Abstract(h) => {
            b.push(0);
            b.extend_from_slice(&hex::decode(h)?);
        }
    }
    if b.len() > std::mem::size_of::<libc::sockaddr_un>() {
        return Err(format!("unix socket name {} is too long", name.display()));
    }
    Ok(b)
}

/// Binds `fd` to `name`. A path's stale socket file (left by the
/// checkpointed process) is removed first; a file of another type there,
/// or the file of a socket still open, is an error. The new file gets the
/// recorded mode and owner.
pub(super) fn bind_name(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    fd: u64,
    name: &UnixName,
    s: &UnixSocket,
) -> Result<(), RestoreError> {
    let pid = remote.pid();
    let addr = unix_sockaddr(name).map_err(|e| state_err(pid, e))?;
    if let UnixName::Path(path) = name {
        let p = scratch.put_cstr(remote, path)?;
        let st = scratch.alloc(STAT_SIZE);
        let r = remote.raw_syscall(
            &format!("{what}: stat {path}"),
            libc::SYS_newfstatat,
            &[
                libc::AT_FDCWD as u64,
                p,
                st,
                libc::AT_SYMLINK_NOFOLLOW as u64,
            ],
        )?;
        if r != -(libc::ENOENT as i64) {
            remote.check(&format!("{what}: stat {path}"), r)?;
            let mut mode = [0u8; 4];
            remote.read_mem(st + STAT_MODE_OFFSET as u64, &mut mode)?;
            if u32::from_ne_bytes(mode) & libc::S_IFMT != libc::S_IFSOCK {
                scratch.reset();
                return Err(state_err(
                    pid,
                    format!("{what}: {path} exists and is not a socket"),
                ));
            }
            let mut dev_ino = [0u8; 16];
            remote.read_mem(st, &mut dev_ino)?;
            let dev = u64::from_ne_bytes(dev_ino[0..8].try_into().expect("8 bytes"));
            let ino = u64::from_ne_bytes(dev_ino[8..16].try_into().expect("8 bytes"));
            if let Some(live) =
                live_socket(pid, dev, ino).map_err(|e| state_err(pid, format!("{what}: {e}")))?
            {
                scratch.reset();
                return Err(state_err(
                    pid,
                    format!(
                        "{what}: {path} is the socket file of socket:[{live}], which is still open \
                         (is the checkpointed process, or another restore of it, still running?)"
                    ),
                ));
            }
            remote.syscall(
                &format!("{what}: unlink the stale socket file {path}"),
                libc::SYS_unlinkat,
                &[libc::AT_FDCWD as u64, p, 0],
            )?;
        }
        scratch.reset();
    }
    with_address(
        remote,
        scratch,
        &format!("{what}: bind"),
        libc::SYS_bind,
        fd,
        &addr,
    )?;
    if let (UnixName::Path(path), Some(f)) = (name, &s.file) {
        let p = scratch.put_cstr(remote, path)?;
        let r = remote
            .syscall(
                &format!("{what}: chmod {path}"),
                libc::SYS_fchmodat,
                &[libc::AT_FDCWD as u64, p, f.mode as u64],
            )
            .and_then(|_| {
                remote.syscall(
                    &format!("{what}: chown {path}"),
                    libc::SYS_fchownat,
                    &[
                        libc::AT_FDCWD as u64,
                        p,
                        f.uid as u64,
                        f.gid as u64,
                        libc::AT_SYMLINK_NOFOLLOW as u64,
                    ],
                )
            });
        scratch.reset();
        r?;
    }
    Ok(())
}

/// The inode of an open unix socket bound to the file (`dev`, `ino`), if
/// there is one in the network namespace of the target `pid`.
fn live_socket(pid: i32, dev: u64, ino: u64) -> Result<Option<u32>, String> {
    Ok(sock_diag::all_unix_sockets_of(pid)?
        .iter()
        .find(|d| d.bound_to(dev, ino))
        .map(|d| d.inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_are_laid_out_as_the_kernel_wants() {
        let p = unix_sockaddr(&UnixName::Path("/a".into())).unwrap();
        assert_eq!(&p[2..], b"/a\0");
        let a = unix_sockaddr(&UnixName::Abstract("6162".into())).unwrap();
        assert_eq!(&a[2..], b"\0ab");
        let long = UnixName::Path("/".repeat(200));
        assert!(unix_sockaddr(&long).unwrap_err().contains("too long"));
    }
}
