//! `containerd-shim-snaprun-v1`: containerd runs it as
//! `-namespace NS -id ID -address SOCK [start|delete]`, and the shim
//! it started without an action (docs/shim.md).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use containerd_shim::Config;
use snaprun_shim::{Service, RUNTIME_ID};
use tracing_subscriber::EnvFilter;

/// Whether PATH is a fifo (containerd's `log` in the bundle).
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Logs of the long-lived shim and of `start` go to the `log` fifo
/// containerd reads in the bundle (`start` must print nothing but the
/// address: containerd reads its stdout and stderr together); those of
/// `delete` to stderr, which containerd reports when it fails.
fn init_logging() {
    let args: Vec<String> = std::env::args().collect();
    let flags = containerd_shim::parse(&args[1..]).ok();
    let debug = flags.as_ref().is_some_and(|f| f.debug);
    let action = flags.as_ref().map_or("", |f| f.action.as_str());
    let serving = action.is_empty() || action == "start";
    let filter = std::env::var("SNAPRUN_SHIM_LOG")
        .ok()
        .unwrap_or_else(|| if debug { "debug" } else { "info" }.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(false)
        .with_target(false);
    let log = Path::new("log");
    let fifo = serving && is_fifo(log);
    // O_NONBLOCK for the open only: no reader must not hang the shim here.
    let file = fifo
        .then(|| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(log)
                .ok()
        })
        .flatten();
    if let Some(f) = &file {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an fd this function owns; no memory is passed.
        unsafe {
            let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    let _ = match file {
        Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
        None if action == "delete" => builder.with_writer(std::io::stderr).try_init(),
        None => builder.with_writer(std::io::sink).try_init(),
    };
}

fn main() {
    init_logging();
    let config = Config {
        no_setup_logger: true,
        ..Default::default()
    };
    containerd_shim::run::<Service>(RUNTIME_ID, Some(config));
}
