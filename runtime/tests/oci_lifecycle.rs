//! The container lifecycle through the real binary: create (init waits on
//! exec.fifo), start, state, ps, list, kill, delete, run, pause/resume.

mod oci_support;

use std::fs;

use oci_support::{assert_fails, wait_for, Bundle};
use serde_json::Value;

#[test]
fn create_waits_until_start_then_runs_kill_and_delete() {
    let b = Bundle::new("life", &["sh", "-c", "echo ran as $$; exec sleep 1000"]);
    let pid = b.create();
    let st = b.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["ociVersion"], "1.0.2");
    assert_eq!(
        st["bundle"],
        b.dir().canonicalize().unwrap().to_str().unwrap()
    );
    assert!(b.root().join(&b.id).join("exec.fifo").exists());
    // The program has not run yet.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(b.out(), "", "the container ran before start");

    b.ok("start");
    let out = b.wait_out("ran as");
    assert_eq!(
        out.trim(),
        "ran as 1",
        "the container's sh is pid 1 of its pid namespace"
    );
    assert_eq!(b.status(), "running");
    assert!(!b.root().join(&b.id).join("exec.fifo").exists());

    let ps: Vec<i32> = serde_json::from_str(&b.ok_args(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps, vec![pid]);
    let table = b.ok_args(&["ps"]);
    assert!(table.contains("sleep 1000"), "{table}");

    let list = b.cmd(&["list", "--format", "json"]);
    let list: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], b.id.as_str());
    assert_eq!(list[0]["status"], "running");
    let table = String::from_utf8(b.cmd(&["list"]).stdout).unwrap();
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&b.id) && table.contains("running"),
        "{table}"
    );

    assert_fails(
        &b.cmd(&["start", &b.id]),
        &["cannot start an already running container"],
    );
    assert_fails(
        &b.cmd(&["delete", &b.id]),
        &[&format!(
            "cannot delete container {} that is not stopped: running",
            b.id
        )],
    );

    let out = b.cmd(&["kill", &b.id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_status("stopped");
    assert_eq!(b.state()["pid"], 0);
    assert_fails(&b.cmd(&["kill", &b.id, "9"]), &["container not running"]);
    assert_fails(
        &b.cmd(&["start", &b.id]),
        &["cannot start a container that has stopped"],
    );

    b.ok("delete");
    assert!(!b.root().join(&b.id).exists());
    assert_fails(&b.cmd(&["state", &b.id]), &["container does not exist"]);
}

#[test]
fn run_returns_the_exit_code_and_cleans_up() {
    let b = Bundle::new("run", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    b.write_config();
    let st = b.cmd_to_files(&["run", "--bundle", b.dir().to_str().unwrap(), &b.id]);
    assert_eq!(st.code(), Some(7), "{}", b.err());
    assert_eq!(b.out(), "out\n");
    assert!(b.err().contains("err"), "{}", b.err());
    assert!(!b.root().join(&b.id).exists(), "run left its state behind");

    // A container killed by a signal: 128 + its number, as a shell reports.
    let b = Bundle::new("runsig", &["sh", "-c", "echo up; exec sleep 1000"]);
    b.write_config();
    let bundle = b.dir();
    let (bref, id) = (&b, b.id.clone());
    let code = std::thread::scope(|s| {
        let h =
            s.spawn(move || bref.cmd_to_files(&["run", "--bundle", bundle.to_str().unwrap(), &id]));
        b.wait_out("up");
        let out = b.cmd(&["kill", &b.id, "KILL"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        h.join().unwrap().code()
    });
    assert_eq!(code, Some(128 + 9), "{}", b.err());
    assert!(!b.root().join(&b.id).exists(), "run left its state behind");
}

#[test]
fn kill_all_reaches_every_process_and_takes_signal_names() {
    let b = Bundle::new(
        "killall",
        &["sh", "-c", "sleep 1001 & sleep 1002 & echo up; wait"],
    );
    b.create();
    b.ok("start");
    b.wait_out("up");
    let pids: Vec<i32> = wait_for("three processes", || {
        let v: Vec<i32> = serde_json::from_str(&b.ok_args(&["ps", "--format", "json"])).ok()?;
        (v.len() == 3).then_some(v)
    });
    // SIGTERM to pid 1 without a handler does nothing; --all SIGKILL ends all.
    let out = b.cmd(&["kill", &b.id, "SIGTERM"]);
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(b.status(), "running");
    let out = b.cmd(&["kill", "--all", &b.id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_status("stopped");
    for p in pids {
        wait_for(&format!("pid {p} gone"), || {
            let st = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            (st.is_empty() || st.contains(") Z")).then_some(())
        });
    }
    assert_fails(&b.cmd(&["kill", &b.id, "NOSUCHSIG"]), &["unknown signal"]);
    b.ok("delete");
}

#[test]
fn delete_of_created_kills_it_and_force_deletes_running() {
    let b = Bundle::new("delcreated", &["sleep", "1000"]);
    let pid = b.create();
    b.ok("delete");
    wait_for("the created init gone", || {
        let st = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (st.is_empty() || st.contains(") Z")).then_some(())
    });
    assert!(!b.root().join(&b.id).exists());

    let b = Bundle::new("delforce", &["sleep", "1000"]);
    b.create();
    b.ok("start");
    let out = b.cmd(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!b.root().join(&b.id).exists());
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let b = Bundle::new(
        "pause",
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.01; done",
        ],
    );
    b.create();
    b.ok("start");
    let count = || -> u64 {
        fs::read_to_string(b.rootfs().join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for("the counter to move", || (count() > 2).then_some(()));
    b.ok("pause");
    assert_eq!(b.status(), "paused");
    assert_fails(&b.cmd(&["pause", &b.id]), &["already paused"]);
    let frozen = count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count(), frozen, "the counter moved while paused");
    b.ok("resume");
    assert_eq!(b.status(), "running");
    wait_for("the counter to move again", || {
        (count() > frozen + 2).then_some(())
    });
    assert_fails(&b.cmd(&["resume", &b.id]), &["not paused"]);
    // A paused container can still be force-deleted.
    b.ok("pause");
    let out = b.cmd(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn features_and_spec() {
    let b = Bundle::new("features", &["true"]);
    let f: Value = serde_json::from_str(&b.ok_args(&["features"])).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&Value::from("pid")) && ns.contains(&Value::from("mount")));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&Value::from("CAP_KILL")));
    // spec refuses to overwrite a config.
    let out = b.cmd(&["spec", "--bundle", b.dir().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
}

#[test]
fn run_with_no_pivot_chroots_into_the_rootfs() {
    let b = Bundle::new("nopivot", &["sh", "-c", "ls /; echo done"]);
    b.write_config();
    let st = b.cmd_to_files(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.dir().to_str().unwrap(),
        &b.id,
    ]);
    assert_eq!(st.code(), Some(0), "{}", b.err());
    let out = b.out();
    assert!(
        out.contains("bin") && out.contains("proc") && out.contains("done"),
        "{out}"
    );
    assert!(!out.contains("usr"), "the host's root shows: {out}");
}

#[test]
fn update_changes_the_cgroup_limits() {
    let b = Bundle::new("update", &["sleep", "1000"]);
    let pid = b.create();
    b.ok("start");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = |ctrl: &str| {
        let line = cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == ctrl))
            })
            .unwrap();
        format!(
            "/sys/fs/cgroup/{ctrl}{}",
            line.splitn(3, ':').nth(2).unwrap()
        )
    };
    let res = b.tmp.path().join("res.json");
    fs::write(
        &res,
        r#"{"memory": {"limit": 33554432}, "pids": {"limit": 9}}"#,
    )
    .unwrap();
    let out = b.cmd(&["update", "--resources", res.to_str().unwrap(), &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: String| fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(
        read(format!("{}/memory.limit_in_bytes", dir("memory"))),
        "33554432"
    );
    assert_eq!(read(format!("{}/pids.max", dir("pids"))), "9");
    let out = b.cmd(&["update", "--pids-limit", "12", "--cpu-shares", "512", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(format!("{}/pids.max", dir("pids"))), "12");
    assert_eq!(read(format!("{}/cpu.shares", dir("cpu"))), "512");
    fs::write(&res, r#"{"memory": {"limit": "lots"}}"#).unwrap();
    let out = b.cmd(&["update", "--resources", res.to_str().unwrap(), &b.id]);
    assert_fails(&out, &["memory.limit", "invalid type"]);
}

/// `snaprun ARGS` with a file open as fd 3 (and nothing above it).
fn with_fd3(b: &Bundle, file: &std::path::Path, args: &[&str]) -> std::process::ExitStatus {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
    let out = fs::File::create(b.out_path()).unwrap();
    let mut cmd = std::process::Command::new(oci_support::SNAPRUN);
    cmd.arg("--root").arg(b.root()).args(args).stdout(out);
    // SAFETY: close_range and open are async-signal-safe; PATH was built
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            if libc::open(path.as_ptr(), libc::O_RDONLY) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.status().unwrap()
}

#[test]
fn preserve_fds_passes_extra_fds_and_others_are_closed() {
    let b = Bundle::new("fds", &["sh", "-c", "cat <&3 || echo fd3-closed"]);
    b.write_config();
    let secret = b.tmp.path().join("secret");
    fs::write(&secret, "through fd 3\n").unwrap();
    let bundle = b.dir();
    let st = with_fd3(
        &b,
        &secret,
        &[
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            bundle.to_str().unwrap(),
            &b.id,
        ],
    );
    assert!(st.success());
    assert_eq!(b.out(), "through fd 3\n");
    let st = with_fd3(
        &b,
        &secret,
        &["run", "--bundle", bundle.to_str().unwrap(), &b.id],
    );
    assert!(st.success());
    assert!(b.out().contains("fd3-closed"), "{}", b.out());
}

#[test]
fn the_program_starts_with_default_signals() {
    // Rust ignores SIGPIPE; that must not leak into the container.
    let b = Bundle::new(
        "signals",
        &["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
    );
    b.write_config();
    let st = b.cmd_to_files(&["run", "--bundle", b.dir().to_str().unwrap(), &b.id]);
    assert!(st.success(), "{}", b.err());
    assert_eq!(
        b.out(),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn run_with_a_terminal_relays_it_like_runc() {
    // The default spec has terminal: true; without --console-socket `run`
    // relays the pty itself. script(1) gives snaprun a terminal to relay.
    let mut b = Bundle::new("tty", &["sh", "-c", "tty; read x; echo got $x; exit 4"]);
    b.config["process"]["terminal"] = true.into();
    b.write_config();
    let line = format!(
        "{} --root {} run --bundle {} {}",
        oci_support::SNAPRUN,
        b.root().display(),
        b.dir().display(),
        b.id
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(fs::File::create(b.out_path()).unwrap());
    let mut child = oci_support::close_fds(&mut cmd).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
    let st = wait_for("snaprun run to exit", || child.try_wait().unwrap());
    drop(stdin);
    let out = b.out();
    assert_eq!(st.code(), Some(4), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("got hello"), "{out}");
    assert!(!b.root().join(&b.id).exists());
    // Detached, a terminal needs someone to hand it to.
    let out = b.cmd(&[
        "run",
        "--detach",
        "--bundle",
        b.dir().to_str().unwrap(),
        &b.id,
    ]);
    assert_fails(&out, &["process.terminal", "--console-socket"]);
}
