//! Files on a filesystem that need more than a path: deleted-but-open
//! (ghost) files, whose content goes into the image.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::image::{FileKind, ImageWriter};

use super::super::DumpError;

/// The largest deleted file whose content goes into a snapshot.
pub const MAX_DELETED_FILE: u64 = 64 << 20;

/// An open, unlinked regular file: its content is read through
/// `/proc/PID/fd/N` (opening that works although the file has no name) and
/// stored in the image.
pub(super) fn dump_deleted(
    pid: i32,
    fd: i32,
    path: &str,
    link_path: &str,
    meta: &fs::Metadata,
    info: &crate::sys::proc::FdInfo,
    writer: &mut ImageWriter,
) -> Result<FileKind, DumpError> {
    use std::io::Read;
    let size = meta.len();
    if size > MAX_DELETED_FILE {
        return Err(DumpError::Unsupported {
            pid,
            fd,
            what: format!(
                "deleted file {path} of {size} bytes (at most {MAX_DELETED_FILE} are kept)"
            ),
        });
    }
    let proc_err = |source| DumpError::Proc {
        pid,
        path: link_path.to_string(),
        source,
    };
    let mut content = Vec::with_capacity(size as usize);
    fs::File::open(link_path)
        .map_err(proc_err)?
        .take(size + 1)
        .read_to_end(&mut content)
        .map_err(proc_err)?;
    if content.len() as u64 != size {
        return Err(DumpError::Fd {
            pid,
            fd,
            reason: format!(
                "deleted file {path}: read {} bytes, its size is {size}",
                content.len()
            ),
        });
    }
    let data = if content.is_empty() {
        None
    } else {
        Some(writer.add(&content)?)
    };
    Ok(FileKind::Deleted {
        path: path.to_string(),
        mode: meta.mode() & 0o7777,
        size,
        pos: info.pos,
        data,
    })
}
