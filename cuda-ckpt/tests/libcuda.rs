//! The real loader ([`LibCuda`]): against this machine's driver (none on a
//! machine without a GPU: `NotAvailable`, saying why), and against fake
//! driver libraries built here from `tests/fake_libcuda/fake_libcuda.c`,
//! which check the argument structs the way a driver does and log what
//! they receive. The fakes test the dlopen/dlsym path, the C layout of the
//! arguments and the error naming; what the real driver does is verified
//! on a GPU machine (docs/gpu.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use cuda_ckpt::{Client, Error, GpuPair, LibCuda, ProcessState};

const FAKE_SRC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fake_libcuda/fake_libcuda.c"
);

/// Builds the fake driver into `dir/libcuda.so.1` with `defines`.
fn build_fake(dir: &Path, defines: &[String]) -> PathBuf {
    let out = dir.join("libcuda.so.1");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(FAKE_SRC)
        .args(defines)
        .status()
        .expect("run cc (build-essential, scripts/setup.sh)");
    assert!(status.success(), "building the fake libcuda failed");
    out
}

fn fake_with_state(dir: &Path) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let lib = build_fake(dir, &[format!("-DFAKE_DIR=\"{}\"", state.display())]);
    (lib, state)
}

fn log(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").spawn().unwrap())
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_system_driver_loads_or_says_why_not() {
    let has_module = Path::new("/proc/driver/nvidia/version").exists();
    match LibCuda::load_default() {
        Ok(lib) => {
            assert!(
                has_module,
                "a driver loaded without the NVIDIA kernel module"
            );
            let client = Client::new(lib).expect("a loaded driver is new enough");
            assert!(client.version() >= cuda_ckpt::MIN_DRIVER_API);
            eprintln!("cuda driver API version {}", client.version());
        }
        Err(Error::NotAvailable { reason }) => {
            assert!(!has_module || std::env::var_os("SNAPRUN_LIBCUDA").is_some());
            // No library at all (a machine without the driver), or one that
            // cannot start (a driver library without a GPU).
            assert!(
                reason.starts_with(
                    "cannot load libcuda.so.1: libcuda.so.1: cannot open shared object file"
                ) || reason.contains("cuInit failed"),
                "{reason}"
            );
            let shown = Error::NotAvailable { reason }.to_string();
            assert!(shown.starts_with("the CUDA driver is not available: "));
        }
        Err(e) => panic!("not a NotAvailable error: {e}"),
    }
}

#[test]
fn a_missing_library_is_not_available() {
    let e = LibCuda::load("/nonexistent/libcuda.so.1").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::NotAvailable { .. })
            && msg.contains("cannot load /nonexistent/libcuda.so.1")
            && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn a_driver_older_than_550_is_not_available() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_fake(dir.path(), &["-DFAKE_VERSION=12020".into()]);
    let e = LibCuda::load(lib.to_str().unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("CUDA 12.2") && msg.contains("older than driver 550"),
        "{msg}"
    );
}

#[test]
fn a_driver_without_the_checkpoint_symbols_is_not_available() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_fake(dir.path(), &["-DFAKE_NO_CHECKPOINT".into()]);
    let e = LibCuda::load(lib.to_str().unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::NotAvailable { .. }) && msg.contains("has no cuCheckpointProcessLock"),
        "{msg}"
    );
}

#[test]
fn calls_reach_the_library_with_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, state) = fake_with_state(dir.path());
    let target = Sleeper::start();
    let pid = target.pid();
    let mut c = Client::new(LibCuda::load(lib.to_str().unwrap()).unwrap()).unwrap();
    assert_eq!(c.version(), 13000);

    assert_eq!(c.state(pid).unwrap(), ProcessState::Running);
    c.suspend(pid, Duration::from_millis(4321)).unwrap();
    assert_eq!(c.state(pid).unwrap(), ProcessState::Checkpointed);
    assert_eq!(c.restore_thread_id(pid).unwrap(), pid);
    let pair: GpuPair =
        "GPU-00112233-4455-6677-8899-aabbccddeeff=GPU-ffeeddcc-bbaa-9988-7766-554433221100"
            .parse()
            .unwrap();
    c.resume(pid, &[pair]).unwrap();
    assert_eq!(c.state(pid).unwrap(), ProcessState::Running);

    let calls = log(&state);
    let ops: Vec<&str> = calls
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .filter(|op| *op != "get-state")
        .collect();
    assert_eq!(
        ops,
        ["lock", "checkpoint", "restore", "unlock"],
        "{calls:#?}"
    );
    // Every call succeeded: the fake accepted the argument structs.
    assert!(calls.iter().all(|l| l.ends_with("-> 0")), "{calls:#?}");
    assert!(calls
        .iter()
        .any(|l| l.starts_with("lock") && l.contains("timeout=4321")));
    let restore = calls.iter().find(|l| l.starts_with("restore")).unwrap();
    assert!(
        restore
            .contains("pairs=00112233445566778899aabbccddeeff>ffeeddccbbaa99887766554433221100,"),
        "{restore}"
    );
}

#[test]
fn driver_errors_are_named_by_the_driver_and_the_lock_undone() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, state) = fake_with_state(dir.path());
    let target = Sleeper::start();
    let pid = target.pid();
    let mut c = Client::new(LibCuda::load(lib.to_str().unwrap()).unwrap()).unwrap();

    std::fs::write(state.join("fail.checkpoint"), "2").unwrap();
    let e = c.suspend(pid, Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("pid {pid}: cuCheckpointProcessCheckpoint failed: CUDA_ERROR_OUT_OF_MEMORY (2)")
    );
    let calls = log(&state);
    assert!(calls.last().unwrap().starts_with("unlock"), "{calls:#?}");
    assert_eq!(c.state(pid).unwrap(), ProcessState::Running);

    std::fs::write(state.join("fail.lock"), "909").unwrap();
    let e = c.suspend(pid, Duration::from_millis(250)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                timeout_ms: 250,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(c.state(pid).unwrap(), ProcessState::Running);
}
