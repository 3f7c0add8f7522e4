//! inotify instances: created empty, then each watch added again by path,
//! with its watch descriptor. The kernel hands out descriptors in
//! increasing order, so a gap (a watch removed before the checkpoint) is
//! skipped by adding a watch and removing it; the `IN_IGNORED` events that
//! makes are read off before the fd is used.

use crate::image::InotifyWatch;
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;
use super::fd_err;

/// The most watch descriptors skipped to reach the next one.
const MAX_SKIP: i32 = 1 << 16;

pub(super) fn inotify(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    watches: &[InotifyWatch],
) -> Result<u64, RestoreError> {
    let pid = remote.pid();
    let what = format!("fd {fd}: inotify");
    // Non-blocking while restoring, so the IN_IGNORED events can be read
    // off; the real flags are set after.
    let new = remote.syscall(
        &format!("{what}: inotify_init1"),
        libc::SYS_inotify_init1,
        &[libc::IN_NONBLOCK as u64],
    )?;
    let mut skipped = false;
    for w in watches {
        let path = scratch.put_cstr(remote, &w.path)?;
        let add = format!("{what}: inotify_add_watch {} (wd {})", w.path, w.wd);
        let mut tries = 0;
        loop {
            let wd = remote.syscall(
                &add,
                libc::SYS_inotify_add_watch,
                &[new, path, w.mask as u64],
            )? as i32;
            if wd == w.wd {
                break;
            }
            tries += 1;
            if wd > w.wd || tries > MAX_SKIP {
                scratch.reset();
                return Err(fd_err(
                    pid,
                    fd,
                    format!("inotify watch {} on {}: got wd {wd}", w.wd, w.path),
                ));
            }
            remote.syscall(
                &format!("{what}: inotify_rm_watch {wd}"),
                libc::SYS_inotify_rm_watch,
                &[new, wd as u64],
            )?;
            skipped = true;
        }
        scratch.reset();
    }
    if skipped {
        let buf = scratch.alloc(4096);
        while remote.raw_syscall(
            &format!("{what}: read IN_IGNORED"),
            libc::SYS_read,
            &[new, buf, 4096],
        )? > 0
        {}
        scratch.reset();
    }
    remote.syscall(
        &format!("{what}: fcntl(F_SETFL)"),
        libc::SYS_fcntl,
        &[new, libc::F_SETFL as u64, (flags & libc::O_NONBLOCK) as u64],
    )?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn watch_descriptors_are_reached_by_skipping() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        let add = "fd 7: inotify: inotify_add_watch /w (wd 3)".to_string();
        fake.results.insert(add.clone(), vec![1, 2, 3]);
        fake.results
            .insert("fd 7: inotify: read IN_IGNORED".into(), vec![32, 0]);
        let watches = [InotifyWatch {
            wd: 3,
            path: "/w".into(),
            mask: 0x100,
        }];
        inotify(&mut fake, &mut scratch, 7, libc::O_NONBLOCK, &watches).unwrap();
        let names: Vec<&str> = fake.calls.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == add).count(),
            3,
            "two skipped, then wd 3: {names:?}"
        );
        assert_eq!(
            names
                .iter()
                .filter(|n| n.contains("inotify_rm_watch"))
                .count(),
            2
        );
        assert_eq!(
            names
                .iter()
                .filter(|n| n.contains("read IN_IGNORED"))
                .count(),
            2
        );
        let setfl = fake.calls.last().unwrap();
        assert_eq!(setfl.2[2], libc::O_NONBLOCK as u64);
    }

    #[test]
    fn a_watch_descriptor_already_passed_is_an_error() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        fake.results
            .insert("fd 7: inotify: inotify_add_watch /w (wd 1)".into(), vec![2]);
        let watches = [InotifyWatch {
            wd: 1,
            path: "/w".into(),
            mask: 0x100,
        }];
        let err = inotify(&mut fake, &mut scratch, 7, 0, &watches).unwrap_err();
        assert!(err.to_string().contains("got wd 2"), "{err}");
    }
}
