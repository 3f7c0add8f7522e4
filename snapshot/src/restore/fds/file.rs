//! Deleted-but-open (ghost) files: recreated under a free name, filled,
//! reopened with their flags and offset, and unlinked again.

use crate::sys::remote::{self, Remote, Scratch};

use super::super::RestoreError;
use super::{fd_err, seek_to};

/// The name a deleted file is recreated under, on `attempt` (0 first): its
/// own path while its directory exists, else a name beside it (or in /tmp
/// when the directory is gone) that nothing else uses.
pub fn ghost_path(path: &str, pid: i32, dir_gone: bool, attempt: u32) -> String {
    let (base, n) = if dir_gone {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty());
        (format!("/tmp/{}", name.unwrap_or("file")), attempt + 1)
    } else {
        (path.to_string(), attempt)
    };
    match n {
        0 => base,
        1 => format!("{base}.snaprun-ghost-{pid}"),
        n => format!("{base}.snaprun-ghost-{pid}-{n}"),
    }
}

/// Recreates an open, deleted file inside the target: created under a free
/// name, filled with its content, opened with its flags at its offset, and
/// unlinked again. Returns the new fd.
#[allow(clippy::too_many_arguments)]
pub(super) fn restore_deleted(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    path: &str,
    mode: u32,
    pos: u64,
    content: &[u8],
) -> Result<u64, RestoreError> {
    const ATTEMPTS: u32 = 16;
    let pid = remote.pid();
    let what = format!("fd {fd}: deleted file {path}");
    // Created owner-writable whatever the mode and umask; the mode is set
    // with fchmod once the file is reopened.
    let create = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
    let mut dir_gone = false;
    let mut attempt = 0;
    let (name, writer) = loop {
        if attempt >= ATTEMPTS {
            return Err(fd_err(
                pid,
                fd,
                format!("deleted file {path}: no free name to recreate it under"),
            ));
        }
        let name = ghost_path(path, pid, dir_gone, attempt);
        let r = remote::open_raw(
            remote,
            scratch,
            &format!("{what}: create {name}"),
            &name,
            create,
            0o600,
        )?;
        if r >= 0 {
            break (name, r as u64);
        }
        match (-r) as i32 {
            libc::EEXIST => attempt += 1,
            libc::ENOENT if !dir_gone => {
                dir_gone = true;
                attempt = 0;
            }
            e => {
                return Err(fd_err(
                    pid,
                    fd,
                    format!(
                        "deleted file {path}: creating {name}: {}",
                        std::io::Error::from_raw_os_error(e)
                    ),
                ))
            }
        }
    };
    let filled = fill_ghost(
        remote, scratch, fd, flags, path, &name, writer, mode, pos, content,
    );
    if filled.is_err() {
        // Best effort: leave no stray file behind; the first error is the
        // one reported.
        if let Ok(p) = scratch.put_cstr(remote, &name) {
            let _ = remote.raw_syscall(
                &format!("{what}: unlink {name}"),
                libc::SYS_unlinkat,
                &[libc::AT_FDCWD as u64, p, 0],
            );
        }
        scratch.reset();
        let _ = remote.raw_syscall("close", libc::SYS_close, &[writer]);
        return filled;
    }
    let r = remote.syscall("close", libc::SYS_close, &[writer]);
    r.map_err(RestoreError::from).and(filled)
}

/// Writes a recreated deleted file's content through `writer`, opens it
/// again with `flags` at `pos`, sets its mode and unlinks it. Returns the
/// new fd.
#[allow(clippy::too_many_arguments)]
fn fill_ghost(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    path: &str,
    name: &str,
    writer: u64,
    mode: u32,
    pos: u64,
    content: &[u8],
) -> Result<u64, RestoreError> {
    let what = format!("fd {fd}: deleted file {path}");
    remote::write_all(remote, scratch, &format!("{what}: write"), writer, content)?;
    let new = remote::open(
        remote,
        scratch,
        &format!("{what}: open {name}"),
        name,
        flags,
    )?;
    remote.syscall(
        &format!("{what}: fchmod {mode:o}"),
        libc::SYS_fchmod,
        &[writer, mode as u64],
    )?;
    if flags & libc::O_PATH == 0 {
        seek_to(remote, &what, fd, new, pos)?;
    }
    let p = scratch.put_cstr(remote, name)?;
    let r = remote.syscall(
        &format!("{what}: unlink {name}"),
        libc::SYS_unlinkat,
        &[libc::AT_FDCWD as u64, p, 0],
    );
    scratch.reset();
    if let Err(e) = r {
        let _ = remote.raw_syscall("close", libc::SYS_close, &[new]);
        return Err(e.into());
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn ghost_names_avoid_taken_paths_and_missing_directories() {
        assert_eq!(ghost_path("/w/gone.bin", 7, false, 0), "/w/gone.bin");
        assert_eq!(
            ghost_path("/w/gone.bin", 7, false, 1),
            "/w/gone.bin.snaprun-ghost-7"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, false, 3),
            "/w/gone.bin.snaprun-ghost-7-3"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, true, 0),
            "/tmp/gone.bin.snaprun-ghost-7"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, true, 1),
            "/tmp/gone.bin.snaprun-ghost-7-2"
        );
        assert_eq!(ghost_path("/", 7, true, 0), "/tmp/file.snaprun-ghost-7");
    }

    #[test]
    fn deleted_file_is_recreated_filled_reopened_and_unlinked() {
        let mut fake = FakeRemote::default();
        let what = "fd 10: deleted file /w/gone.bin";
        fake.results.insert(
            format!("{what}: create /w/gone.bin"),
            vec![-(libc::EEXIST as i64)],
        );
        fake.results
            .insert(format!("{what}: write"), vec![32768, 32768, 4]);
        fake.results.insert(format!("{what}: lseek"), vec![5000]);
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        let content = vec![7u8; 65540];
        let fd = restore_deleted(
            &mut fake,
            &mut scratch,
            10,
            libc::O_RDWR,
            "/w/gone.bin",
            0o640,
            5000,
            &content,
        )
        .unwrap();
        let ghost = "/w/gone.bin.snaprun-ghost-4242";
        let names: Vec<&str> = fake.calls.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("{what}: create /w/gone.bin"),
                format!("{what}: create {ghost}"),
                format!("{what}: write"),
                format!("{what}: write"),
                format!("{what}: write"),
                format!("{what}: open {ghost}"),
                format!("{what}: fchmod 640"),
                format!("{what}: lseek"),
                format!("{what}: unlink {ghost}"),
                "close".to_string(),
            ]
        );
        let writer = fake.calls[1].2.len();
        assert_eq!(writer, 4);
        assert_eq!(fake.calls[2].2[2], 32768);
        assert_eq!(fake.calls[4].2[2], 4);
        assert_eq!(fake.calls[5].2[2], libc::O_RDWR as u64);
        assert_eq!(fd, 102);
        // The writer (the first fd the fake handed out) is the one closed.
        assert_eq!(fake.calls[9].2, vec![101]);
    }

    #[test]
    fn deleted_file_goes_to_tmp_when_its_directory_is_gone() {
        let mut fake = FakeRemote::default();
        let what = "fd 3: deleted file /gone/x";
        fake.results.insert(
            format!("{what}: create /gone/x"),
            vec![-(libc::ENOENT as i64)],
        );
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        restore_deleted(
            &mut fake,
            &mut scratch,
            3,
            libc::O_RDONLY,
            "/gone/x",
            0o600,
            0,
            &[],
        )
        .unwrap();
        assert_eq!(
            fake.calls[1].0,
            format!("{what}: create /tmp/x.snaprun-ghost-4242")
        );
        assert!(fake
            .calls
            .iter()
            .any(|c| c.0 == format!("{what}: unlink /tmp/x.snaprun-ghost-4242")));
    }
}
