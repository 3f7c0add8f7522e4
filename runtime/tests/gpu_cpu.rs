//! The CUDA paths of checkpoint, restore and `snaprun gpu`, on a machine
//! without a GPU (docs/gpu.md, "What is verified where").
//!
//! The target is `tests/programs/cuda_client`, which dlopens a fake driver
//! library named `libcuda.so.1` (`cuda-ckpt/tests/fake_libcuda/`), so that
//! snaprun sees a process that maps libcuda. Two cases:
//! - no driver for snaprun: checkpoint, restore and `gpu` refuse, naming
//!   the pid and saying the CUDA driver is not available;
//! - snaprun loads the same fake (`SNAPRUN_LIBCUDA`), which keeps each
//!   pid's checkpoint state in files and logs every call with the target's
//!   TracerPid: the tests check the order of the calls against the freeze
//!   and the resume, the manifest's CUDA state, the GPU map, and what
//!   happens when a driver call fails.
//!
//! The real driver's behaviour is checked on a GPU machine
//! (scripts/gpu/).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{is_alive, show_output, Case, SNAPRUN};
use tempfile::TempDir;

const FAKE_SRC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cuda-ckpt/tests/fake_libcuda/fake_libcuda.c"
);

/// The fake driver, built into its own directory, and its state directory.
struct FakeDriver {
    _dir: TempDir,
    lib: PathBuf,
    state: PathBuf,
}

impl FakeDriver {
    fn build() -> FakeDriver {
        let dir = tempfile::Builder::new()
            .prefix("snaprun-fakecuda-")
            .tempdir()
            .unwrap();
        let lib = dir.path().join("libcuda.so.1");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
            .arg(&lib)
            .arg(FAKE_SRC)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "{}",
            show_output("cc fake_libcuda", &out)
        );
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        FakeDriver {
            _dir: dir,
            lib,
            state,
        }
    }

    fn lib(&self) -> &str {
        self.lib.to_str().unwrap()
    }

    /// The calls made so far, get-state queries left out.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("get-state"))
            .map(str::to_string)
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.state.join("log"));
    }

    fn fail_next(&self, op: &str, code: u32) {
        std::fs::write(self.state.join(format!("fail.{op}")), code.to_string()).unwrap();
    }

    fn state_of(&self, pid: i32) -> Option<i32> {
        std::fs::read_to_string(self.state.join(format!("state.{pid}")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// How snaprun finds (or does not find) a driver.
enum Driver<'a> {
    /// None: this machine's driver when it has none, else a library path
    /// that does not exist.
    Absent,
    Fake(&'a FakeDriver),
}

fn snaprun(driver: &Driver, args: &[&str]) -> Output {
    let mut cmd = Command::new(SNAPRUN);
    cmd.args(args).stdin(Stdio::null());
    match driver {
        Driver::Absent => {
            if Path::new("/proc/driver/nvidia/version").exists() {
                cmd.env("SNAPRUN_LIBCUDA", "/nonexistent/libcuda.so.1");
            } else {
                cmd.env_remove("SNAPRUN_LIBCUDA");
            }
        }
        Driver::Fake(f) => {
            cmd.env("SNAPRUN_LIBCUDA", f.lib())
                .env("FAKE_CUDA_DIR", &f.state);
        }
    }
    cmd.output().expect("run snaprun")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn start(fake: &FakeDriver, extra: &[&str]) -> Case {
    let mut args = vec![fake.lib()];
    args.extend_from_slice(extra);
    Case::start_with("cuda_client", &args, &[])
}

fn checkpoint(case: &Case, driver: &Driver, extra: &[&str]) -> Output {
    let pid = case.pid.to_string();
    let img = case.image();
    let mut args = vec![
        "checkpoint",
        "--pid",
        &pid,
        "--image-path",
        img.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    snaprun(driver, &args)
}

fn restore(case: &mut Case, driver: &Driver, extra: &[&str]) -> Output {
    let img = case.image();
    let pidfile = case.workdir().join("pidfile");
    let mut args = vec![
        "restore",
        "--image-path",
        img.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    snaprun(driver, &args)
}

/// The manifest's `cuda` entry of the first process.
fn manifest_cuda(case: &Case) -> serde_json::Value {
    let text = std::fs::read_to_string(case.image().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["manifest"]["processes"][0]["cuda"].clone()
}

/// The op and the tracer field of a fake's log line.
fn op_tracer(line: &str) -> (String, String) {
    let mut words = line.split_whitespace();
    let op = words.next().unwrap().to_string();
    let tracer = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tracer="))
        .unwrap()
        .to_string();
    (op, tracer)
}

#[test]
fn the_stand_in_runs_without_snaprun() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid;
    case.go();
    case.expect_pass(pid);
}

#[test]
fn checkpoint_refuses_a_cuda_process_without_a_driver() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let out = checkpoint(&case, &Driver::Absent, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{}", show_output("checkpoint", &out));
    assert!(
        err.contains(&format!(
            "pid {} is a CUDA process (it maps {})",
            case.pid,
            fake.lib()
        )) && err.contains("the CUDA driver is not available: cannot load"),
        "{err}"
    );
    // Refused before the freeze: the source runs on, untouched.
    assert_eq!(common::tracer_pid(case.pid), Some(0));
    assert!(case.source_running());
    let pid = case.pid;
    case.go();
    case.expect_pass(pid);
}

#[test]
fn gpu_commands_without_a_driver_say_so() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid.to_string();
    for cmd in ["suspend", "resume", "state"] {
        let out = snaprun(&Driver::Absent, &["gpu", cmd, &pid]);
        let err = stderr(&out);
        assert!(!out.status.success(), "gpu {cmd}: {err}");
        assert!(
            err.contains(&format!(
                "snaprun: error: pid {pid}: the CUDA driver is not available: cannot load"
            )),
            "gpu {cmd}: {err}"
        );
    }
    let p = case.pid;
    case.go();
    case.expect_pass(p);
}

#[test]
fn checkpoint_and_restore_drive_the_driver_around_the_freeze() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid;
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    case.assert_ok("snaprun checkpoint", &out);
    case.reap_source_killed();
    // Lock and checkpoint ran while the process was not traced: before the
    // freeze.
    let calls: Vec<_> = fake.calls().iter().map(|l| op_tracer(l)).collect();
    assert_eq!(
        calls,
        [
            ("lock".into(), "0".into()),
            ("checkpoint".into(), "0".into())
        ],
        "{:#?}",
        fake.calls()
    );
    assert!(
        fake.calls()[0].contains("timeout=30000"),
        "{:#?}",
        fake.calls()
    );
    let cuda = manifest_cuda(&case);
    assert_eq!(cuda["checkpointed"], true, "{cuda}");
    assert_eq!(cuda["driver_api"], 13000, "{cuda}");
    let out = snaprun(
        &Driver::Absent,
        &["snapshot", "inspect", case.image().to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  cuda: GPU state checkpointed through the driver (CUDA 13.0), GPUs []"),
        "{}",
        show_output("snapshot inspect", &out)
    );

    fake.clear_log();
    let out = restore(&mut case, &Driver::Fake(&fake), &[]);
    let restored = case.restored_from(&out);
    // Restore and unlock ran once the process was detached and running.
    let calls: Vec<_> = fake.calls().iter().map(|l| op_tracer(l)).collect();
    assert_eq!(
        calls,
        [
            ("restore".into(), "0".into()),
            ("unlock".into(), "0".into())
        ],
        "{:#?}",
        fake.calls()
    );
    assert!(fake.calls()[0].contains(&format!("pid={restored} ")));
    assert_eq!(fake.state_of(pid), Some(0), "running again");
    case.go();
    case.expect_pass(restored);
}

#[test]
fn leave_running_gives_the_source_its_gpu_back() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let out = checkpoint(
        &case,
        &Driver::Fake(&fake),
        &["--leave-running", "--gpu-lock-timeout", "2.5"],
    );
    case.assert_ok("snaprun checkpoint --leave-running", &out);
    let ops: Vec<_> = fake.calls().iter().map(|l| op_tracer(l)).collect();
    assert_eq!(
        ops,
        [
            ("lock".into(), "0".into()),
            ("checkpoint".into(), "0".into()),
            ("restore".into(), "0".into()),
            ("unlock".into(), "0".into())
        ],
        "{:#?}",
        fake.calls()
    );
    assert!(
        fake.calls()[0].contains("timeout=2500"),
        "{:#?}",
        fake.calls()
    );
    assert_eq!(fake.state_of(case.pid), Some(0));
    assert!(case.source_running());
    let pid = case.pid;
    case.go();
    case.expect_pass(pid);
}

#[test]
fn a_failed_gpu_checkpoint_leaves_the_source_running() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    fake.fail_next("checkpoint", 2);
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "pid {0} (a CUDA process): checkpointing its GPU state: pid {0}: cuCheckpointProcessCheckpoint failed: CUDA_ERROR_OUT_OF_MEMORY (2)",
            case.pid
        )),
        "{err}"
    );
    let ops: Vec<_> = fake.calls().iter().map(|l| op_tracer(l).0).collect();
    assert_eq!(ops, ["lock", "checkpoint", "unlock"], "{:#?}", fake.calls());
    assert_eq!(fake.state_of(case.pid), Some(0));
    let pid = case.pid;
    case.go();
    case.expect_pass(pid);
}

#[test]
fn a_refused_dump_gives_the_gpu_back() {
    // The netlink socket is refused after the GPU checkpoint: the source
    // must get its GPU state back, after it is released.
    let fake = FakeDriver::build();
    let mut case = start(&fake, &["netlink"]);
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("netlink"), "{err}");
    let ops: Vec<_> = fake.calls().iter().map(|l| op_tracer(l)).collect();
    assert_eq!(
        ops,
        [
            ("lock".into(), "0".into()),
            ("checkpoint".into(), "0".into()),
            ("restore".into(), "0".into()),
            ("unlock".into(), "0".into())
        ],
        "{:#?}",
        fake.calls()
    );
    assert_eq!(fake.state_of(case.pid), Some(0));
    let pid = case.pid;
    case.go();
    case.expect_pass(pid);
}

#[test]
fn restore_of_a_cuda_snapshot_needs_the_driver() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid;
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    case.assert_ok("snaprun checkpoint", &out);
    case.reap_source_killed();
    let out = restore(&mut case, &Driver::Absent, &[]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "pid {pid} was checkpointed with its GPU state (a CUDA process), so its restore needs the CUDA driver: the CUDA driver is not available"
        )),
        "{err}"
    );
    // Refused before any process existed.
    assert!(!is_alive(pid));
}

#[test]
fn a_failed_driver_restore_kills_the_restored_process() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid;
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    case.assert_ok("snaprun checkpoint", &out);
    case.reap_source_killed();
    fake.fail_next("restore", 2);
    let out = restore(&mut case, &Driver::Fake(&fake), &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{}", show_output("restore", &out));
    assert!(
        err.contains(&format!(
            "pid {pid} (restored as pid {pid}): giving it its GPU state back"
        )) && err.contains("CUDA_ERROR_OUT_OF_MEMORY")
            && err.contains("the restored processes were killed"),
        "{err}"
    );
    case.wait_pid_gone(pid);
}

#[test]
fn the_gpu_map_reaches_the_driver() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let out = checkpoint(&case, &Driver::Fake(&fake), &[]);
    case.assert_ok("snaprun checkpoint", &out);
    case.reap_source_killed();
    fake.clear_log();
    let map = "GPU-00112233-4455-6677-8899-aabbccddeeff=GPU-ffeeddcc-bbaa-9988-7766-554433221100";
    let out = restore(&mut case, &Driver::Fake(&fake), &["--gpu-map", map]);
    let restored = case.restored_from(&out);
    let calls = fake.calls();
    assert!(
        calls[0].starts_with("restore")
            && calls[0].contains(
                "pairs=00112233445566778899aabbccddeeff>ffeeddccbbaa99887766554433221100,"
            ),
        "{calls:#?}"
    );
    case.go();
    case.expect_pass(restored);
}

#[test]
fn gpu_suspend_and_resume_with_the_fake_driver() {
    let fake = FakeDriver::build();
    let mut case = start(&fake, &[]);
    let pid = case.pid.to_string();
    let drv = Driver::Fake(&fake);
    let out = snaprun(&drv, &["gpu", "suspend", &pid]);
    assert!(out.status.success(), "{}", show_output("gpu suspend", &out));
    assert_eq!(fake.state_of(case.pid), Some(2));
    let out = snaprun(&drv, &["gpu", "state", &pid]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "checkpointed");
    // Suspending twice is refused before the driver is called.
    let out = snaprun(&drv, &["gpu", "suspend", &pid]);
    assert!(
        stderr(&out).contains(
            "cuCheckpointProcessLock needs a running CUDA process, but its state is checkpointed"
        ),
        "{}",
        stderr(&out)
    );
    let out = snaprun(&drv, &["gpu", "resume", &pid]);
    assert!(out.status.success(), "{}", show_output("gpu resume", &out));
    assert_eq!(fake.state_of(case.pid), Some(0));
    let ops: Vec<_> = fake.calls().iter().map(|l| op_tracer(l).0).collect();
    assert_eq!(ops, ["lock", "checkpoint", "restore", "unlock"]);
    let p = case.pid;
    case.go();
    case.expect_pass(p);
}
