//! `exec`: a new process joins a running container's namespaces and cgroups,
//! from a command line or a runtime-spec process JSON.

mod oci_support;

use std::fs;

use oci_support::{assert_fails, wait_for, Bundle};
use serde_json::json;

fn running(name: &str) -> Bundle {
    let mut b = Bundle::new(
        name,
        &[
            "sh",
            "-c",
            "echo secret > /scratch/s; echo up; exec sleep 1000",
        ],
    );
    b.config["hostname"] = "exechost".into();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    b.create();
    b.ok("start");
    b.wait_out("up");
    b
}

#[test]
fn exec_joins_the_namespaces_and_returns_the_exit_code() {
    let b = running("exec");
    let out = b.cmd(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "echo host=$(hostname) scratch=$(cat /scratch/s) init=$(cat /proc/1/comm) me=$$; exit 5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("host=exechost"), "{stdout}");
    // The tmpfs exists only in the container's mount namespace.
    assert!(stdout.contains("scratch=secret"), "{stdout}");
    assert!(stdout.contains("init=sleep"), "{stdout}");
    let me: i32 = stdout.trim().rsplit("me=").next().unwrap().parse().unwrap();
    assert!(me > 1, "{stdout}");

    let out = b.cmd(&["exec", "--user", "1000:1000", &b.id, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    assert_fails(
        &b.cmd(&["exec", &b.id, "no-such-tool"]),
        &["executable file not found in $PATH"],
    );
}

#[test]
fn exec_process_json_detached_is_in_the_cgroup() {
    let b = running("execjson");
    let process = json!({
        "args": ["sh", "-c", "echo $FOO > /scratch/out; echo $$ > /scratch/pid; exec sleep 1000"],
        "env": ["PATH=/bin", "FOO=from-json"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0}
    });
    let pfile = b.tmp.path().join("process.json");
    fs::write(&pfile, process.to_string()).unwrap();
    let pid_file = b.tmp.path().join("exec.pid");
    // Detached, the process keeps its stdio: files, not pipes.
    let st = b.cmd_to_files(&[
        "exec",
        "--process",
        pfile.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(st.success(), "{}", b.err());
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i32> = wait_for("the exec'd process in ps", || {
        let v: Vec<i32> = serde_json::from_str(&b.ok_args(&["ps", "--format", "json"])).ok()?;
        (v.len() == 2).then_some(v)
    });
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    let got = wait_for("the exec'd output", || {
        let o = b.cmd(&["exec", &b.id, "cat", "/scratch/out"]);
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(got, "from-json");
    // kill --all reaches the exec'd process too.
    assert!(b.cmd(&["kill", "--all", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    wait_for("the exec'd process gone", || {
        let st = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (st.is_empty() || st.contains(") Z")).then_some(())
    });
}

#[test]
fn bad_process_json_names_the_field() {
    let b = running("execbad");
    let pfile = b.tmp.path().join("process.json");
    fs::write(&pfile, r#"{"args": ["true"], "cwd": 7}"#).unwrap();
    let out = b.cmd(&["exec", "--process", pfile.to_str().unwrap(), &b.id]);
    assert_fails(&out, &["process.json", "cwd", "invalid type"]);
}

#[test]
fn a_foreground_exec_forwards_signals() {
    let b = running("execsig");
    let out = fs::File::create(b.tmp.path().join("exec.out")).unwrap();
    let mut cmd = std::process::Command::new(oci_support::SNAPRUN);
    cmd.arg("--root").arg(b.root()).args([
        "exec",
        &b.id,
        "sh",
        "-c",
        "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    cmd.stdout(out).stdin(std::process::Stdio::null());
    let mut child = oci_support::close_fds(&mut cmd).spawn().unwrap();
    wait_for("the exec'd shell", || {
        fs::read_to_string(b.tmp.path().join("exec.out"))
            .ok()
            .filter(|s| s.contains("ready"))
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_for("snaprun exec to exit", || child.try_wait().unwrap());
    assert_eq!(st.code(), Some(9), "the signal did not reach the process");
    let text = fs::read_to_string(b.tmp.path().join("exec.out")).unwrap();
    assert!(text.contains("got-term"), "{text}");
}

#[test]
fn exec_with_a_tty_relays_it() {
    let b = running("exectty");
    let line = format!(
        "{} --root {} exec -t {} sh -c 'tty; read x; echo got $x; exit 6'",
        oci_support::SNAPRUN,
        b.root().display(),
        b.id
    );
    let out_path = b.tmp.path().join("tty.out");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(fs::File::create(&out_path).unwrap());
    let mut child = oci_support::close_fds(&mut cmd).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"there\n").unwrap();
    let st = wait_for("snaprun exec to exit", || child.try_wait().unwrap());
    drop(stdin);
    let out = fs::read_to_string(&out_path).unwrap();
    assert_eq!(st.code(), Some(6), "{out}");
    // The init holds no pty: the exec'd shell gets the first one.
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("got there"), "{out}");
}
