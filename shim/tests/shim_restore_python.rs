//! Restore-on-create of a real container checkpoint through containerd:
//! the example inference server runs cold through the shim, answers, is
//! checkpointed into a store with `snaprun checkpoint --to`, and is gone;
//! then containers created with `io.snaprun.snapshot` start from that
//! snapshot (twice: a snapshot is reusable) and answer from its state:
//! the same embeddings, the request counter going on from the snapshot's,
//! the heartbeat thread ticking, the `/snaprun/restore` event saying
//! `restored`, the pager (the restore is lazy) bringing every page in and
//! pushing the working set the first restore recorded, and `ctr task ps`,
//! `kill` and `rm` working on the task.

mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::python::{self, ServerRootfs};
use support::{close_fds, snaprun, text, unique_id, wait_for, Containerd};

const SNAPSHOT: &str = "pyserver:warm";
const TEXTS: [&str; 2] = ["a container restored on create", "warm inference"];

/// `ctr run -d` of the server in a new container ID, with FLAGS (the
/// annotations) before the rootfs.
fn run_server(c: &Containerd, server: &ServerRootfs, id: &str, flags: &[String]) {
    let cgroup = format!("snaprun-test/{id}");
    let mut all: Vec<String> = vec!["-d".into()];
    all.extend(server.flags());
    all.extend_from_slice(flags);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let args = server.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = Containerd::run_args(&all, server.rootfs.to_str().unwrap(), id, &cgroup, &args);
    let out = c.ctr(&cmd);
    assert!(
        out.status.success(),
        "ctr run -d {id}: {}\n{}\n{}",
        text(&out),
        server.log(),
        c.log()
    );
}

/// The init pid containerd has for ID (`ctr task ls`).
fn task_pid(c: &Containerd, id: &str) -> i32 {
    let out = c.ctr(&["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in `ctr task ls`: {}", text(&out)))
}

/// `ctr task rm` and `ctr containers rm` of a stopped task.
fn remove(c: &Containerd, id: &str) {
    wait_for(&format!("task {id} to stop"), || {
        (c.task_status(id) == "STOPPED").then_some(())
    });
    let out = c.ctr(&["task", "rm", id]);
    assert!(out.status.success(), "ctr task rm {id}: {}", text(&out));
    let out = c.ctr(&["containers", "rm", id]);
    assert!(
        out.status.success(),
        "ctr containers rm {id}: {}",
        text(&out)
    );
}

/// The working-set chunks the pager pushed before the resume, from its
/// log's `working set in` line (`pushed_chunks="N"`).
fn pushed_chunks(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("working set in"))
        .unwrap_or_else(|| panic!("no `working set in` in the pager's log: {log}"));
    let at = line.find("pushed_chunks=").expect("pushed_chunks") + "pushed_chunks=".len();
    line[at..]
        .trim_start_matches('"')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pushed_chunks in {line}"))
}

#[test]
fn a_container_restored_on_create_answers_from_the_checkpointed_state() {
    let c = Containerd::start();
    let server = ServerRootfs::new(&c.tmp.path().join("py"));
    let store = c.tmp.path().join("store");
    let events = c.events();

    // Cold: the entrypoint runs, the server warms up and answers twice.
    let cold = unique_id("py-cold");
    run_server(&c, &server, &cold, &[]);
    let port = server.wait_port();
    let first = python::wait_embed(port, &TEXTS, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("cold server on port {port}: {e}\n{}", server.log()));
    let warm = python::embed(port, &TEXTS).unwrap();
    assert_eq!(warm.count, first.count + 1);
    assert_eq!(warm.vectors, first.vectors);
    let beats_at_checkpoint = python::heartbeats(port).unwrap();

    // Checkpoint into the store: the container is gone afterwards.
    let out = close_fds(
        Command::new(snaprun())
            .arg("--root")
            .arg(c.runtime_root())
            .args(["checkpoint", "--to", SNAPSHOT, "--store"])
            .arg(&store)
            .arg(&cold)
            .stdin(Stdio::null()),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "snaprun checkpoint {cold}: {}\n{}",
        text(&out),
        server.log()
    );
    assert!(
        python::health(port).is_err(),
        "the checkpointed server still answers"
    );
    remove(&c, &cold);
    python::wait_port_closed(port);

    let annotations = [
        "--annotation".to_string(),
        format!("io.snaprun.snapshot={SNAPSHOT}"),
        "--annotation".to_string(),
        format!("io.snaprun.store={}", store.display()),
    ];
    // Twice from the same snapshot: each goes on from its state.
    for round in 0..2 {
        let id = unique_id("py-restored");
        run_server(&c, &server, &id, &annotations);
        events.wait_line(
            "/snaprun/restore",
            &[&id, "\"io.snaprun.restore\":\"restored\"", SNAPSHOT],
        );
        let answer = python::wait_embed(port, &TEXTS, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("round {round}: restored {id}: {e}\n{}", server.log()));
        assert_eq!(
            answer.count,
            warm.count + 1,
            "round {round}: the request counter did not go on from the snapshot's"
        );
        assert_eq!(
            answer.vectors, first.vectors,
            "round {round}: another embedding after restore"
        );
        let h = python::health(port).unwrap();
        assert_eq!(h["pid"], 1, "the server is the container's init: {h}");
        let beats = h["heartbeats"].as_u64().unwrap();
        assert!(
            beats >= beats_at_checkpoint,
            "round {round}: heartbeats {beats} < {beats_at_checkpoint} at checkpoint"
        );
        wait_for("the heartbeat thread to tick again", || {
            (python::heartbeats(port).ok()? > beats + 2).then_some(())
        });
        // Restored lazily: its pager pushed the working set (from the
        // second round: the first records it) and brings every page in.
        let pager_log = c.runtime_root().join("pager").join(format!("{id}.log"));
        let log = wait_for("the pager to bring every page in", || {
            let log = fs::read_to_string(&pager_log).ok()?;
            log.contains("every page is in").then_some(log)
        });
        let pushed = pushed_chunks(&log);
        if round == 0 {
            assert_eq!(
                pushed, 0,
                "round 0: a working set before any was recorded: {log}"
            );
        } else {
            assert!(pushed > 0, "round {round}: no working set pushed: {log}");
        }

        // The task's init is the restored server, and the task answers.
        let pid = task_pid(&c, &id);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("server.py"),
            "task {id}'s pid {pid} is not the server: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
        assert_eq!(c.task_status(&id), "RUNNING");
        let ps = c.ctr(&["task", "ps", &id]);
        assert!(ps.status.success(), "ctr task ps {id}: {}", text(&ps));
        let pids: Vec<i32> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(pids, vec![pid], "ctr task ps {id}: {}", text(&ps));

        // The server is pid 1 of its namespace, so only signals it
        // handles reach it from there: SIGINT (Python's handler, restored
        // with the process, ends serve_forever and the server exits 0),
        // then in the second round SIGKILL.
        // (The event's JSON leaves out a status of 0.)
        let (signal, status) = if round == 0 {
            ("INT", None)
        } else {
            ("KILL", Some("\"exit_status\":137"))
        };
        let kill = c.ctr(&["task", "kill", "-s", signal, &id]);
        assert!(
            kill.status.success(),
            "ctr task kill -s {signal} {id}: {}\n{}",
            text(&kill),
            c.log()
        );
        let ctid = format!("\"container_id\":\"{id}\"");
        let exit = events.wait_line("/tasks/exit", &[&ctid]);
        match status {
            Some(s) => assert!(exit.contains(s), "want {s}: {exit}"),
            None => assert!(!exit.contains("exit_status"), "want 0: {exit}"),
        }
        remove(&c, &id);
        python::wait_port_closed(port);
        assert!(!c.runtime_root().join(&id).exists());
    }
}
