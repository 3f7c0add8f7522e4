//! Anonymous-inode files (`anon_inode:[...]`), whose state the kernel shows
//! in fdinfo.

use crate::image::FileKind;

/// An eventfd's counter and mode, from its fdinfo.
pub(super) fn eventfd(info: &crate::sys::proc::FdInfo) -> Result<FileKind, String> {
    let field = |name: &str| {
        info.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
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
}
