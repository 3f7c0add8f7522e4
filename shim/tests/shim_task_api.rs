//! The task requests `ctr` 1.6 has no command for, sent straight to the
//! shim's ttrpc socket (as containerd sends them): Update writes the
//! container's cgroup limits, Connect names the shim and the task, requests
//! for an unknown exec answer NotFound; and `ctr task checkpoint` (no
//! options) checkpoints the task into an image, leaving it running.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim_protos::api::{ConnectRequest, StateRequest, UpdateTaskRequest, WaitRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::ttrpc::context::with_duration;
use containerd_shim_protos::ttrpc::{self, Code};
use containerd_shim_protos::{Client, TaskClient};
use support::{text, unique_id, wait_for, Containerd};

/// The memory limit of PID's cgroup (v1 memory hierarchy, else v2).
fn memory_limit(pid: u32) -> u64 {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut candidates: Vec<PathBuf> = Vec::new();
    for line in cg.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            candidates.push(
                PathBuf::from("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.limit_in_bytes"),
            );
        } else if ctrls.is_empty() {
            candidates.push(
                PathBuf::from("/sys/fs/cgroup")
                    .join(path)
                    .join("memory.max"),
            );
            candidates.push(
                PathBuf::from("/sys/fs/cgroup/unified")
                    .join(path)
                    .join("memory.max"),
            );
        }
    }
    for c in &candidates {
        if let Ok(v) = fs::read_to_string(c) {
            if let Ok(n) = v.trim().parse() {
                return n;
            }
        }
    }
    panic!("no memory limit file among {candidates:?}");
}

fn code_of(e: ttrpc::Error) -> Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

#[test]
fn update_connect_notfound_and_checkpoint() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let id = unique_id("api");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--detach"],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &["sleep", "60"],
    );
    let out = c.ctr(&args);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    wait_for("task running", || {
        (c.task_status(&id) == "RUNNING").then_some(())
    });

    let bundle = c
        .tmp
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.namespace)
        .join(&id);
    let address = fs::read_to_string(bundle.join("address")).unwrap();
    let task = TaskClient::new(Client::connect(address.trim()).unwrap());
    let ctx = || with_duration(Duration::from_secs(10));

    let conn = task
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    let init = conn.task_pid;
    assert!(
        init > 0 && conn.shim_pid > 0 && conn.shim_pid != init,
        "{conn:?}"
    );
    let shim_exe = fs::read_link(format!("/proc/{}/exe", conn.shim_pid)).unwrap();
    assert!(
        shim_exe.ends_with("containerd-shim-snaprun-v1"),
        "{shim_exe:?}"
    );

    // containerd sends the runtime-spec resources as JSON.
    let limit: u64 = 96 << 20;
    let resources = serde_json::json!({"memory": {"limit": limit}});
    let req = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    task.update(ctx(), &req).unwrap();
    assert_eq!(memory_limit(init), limit);

    let e = task
        .state(
            ctx(),
            &StateRequest {
                id: id.clone(),
                exec_id: "nope".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(e), Code::NOT_FOUND);
    let e = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.clone(),
                exec_id: "nope".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(e), Code::NOT_FOUND);

    // `ctr task checkpoint` sends no options to a runtime other than
    // runc's: the task is checkpointed left running, into an image.
    let out = c.ctr(&["task", "checkpoint", &id]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(name.contains(&id), "{}", text(&out));
    let images = c.ctr(&["images", "ls", "-q"]);
    assert!(
        String::from_utf8_lossy(&images.stdout).contains(&name),
        "{}",
        text(&images)
    );
    // The task is left running, the same process.
    assert_eq!(c.task_status(&id), "RUNNING");
    let conn = task
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(conn.task_pid, init);
}
