//! containerd's checkpoint API through the shim (`--runtime
//! io.containerd.snaprun.v1`): a busybox container counting into a tmpfs
//! is checkpointed (left running by `ctr containers checkpoint --task`;
//! with `exit`, sent as containerd sends it, the task stops), its task and
//! container go, and `ctr containers restore --live` creates it from the
//! checkpoint image: the counter goes on from where it was, and the
//! restored task is killed and removed with `ctr`. Then what is refused,
//! and how it says so.

mod support;

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use containerd_shim_protos::ttrpc::{self, Code};
use snaprun_shim::checkpoint::pack;
use support::checkpoint::{
    bundle, counter, counter_at_least, ctr_ok, ctx, import_busybox, import_checkpoint, ns_pid,
    read_in, run_counter, shim_client, task_pid,
};
use support::{text, unique_id, wait_for, Containerd};

fn status_of(e: ttrpc::Error) -> (Code, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a status: {other:?}"),
    }
}

/// The restored task ID runs as pid 1 of its namespace with the tmpfs
/// back, its counter going on from at least BEFORE, the shim's pipes as its
/// stdio; `ctr task kill` and `ctr task rm` end it.
fn check_restored_then_kill(c: &Containerd, id: &str, before: u64) {
    let pid = wait_for("the restored task to run", || task_pid(c, id));
    assert_eq!(ns_pid(pid), "1");
    assert_eq!(read_in(pid, "/run/once").as_deref(), Some("hello\n"));
    // A cold start would count from 1 again.
    let first = counter(pid).unwrap();
    assert!(
        first >= before,
        "counter {before} -> {first}: it did not go on from the checkpoint"
    );
    counter_at_least(pid, first + 3);
    let stdout = fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert!(
        stdout.to_string_lossy().starts_with("pipe:"),
        "{}",
        stdout.display()
    );
    let ps = ctr_ok(c, &["task", "ps", id]);
    assert!(ps.contains(&pid.to_string()), "{ps}");
    // SIGTERM (ctr's default) reaches it; the shell, pid 1 of its
    // namespace without a handler, does not die of it.
    ctr_ok(c, &["task", "kill", id]);
    sleep(Duration::from_millis(300));
    assert_eq!(task_pid(c, id), Some(pid));
    ctr_ok(c, &["task", "kill", "--signal", "KILL", id]);
    wait_for("the restored task to stop", || {
        (c.task_status(id) == "STOPPED").then_some(())
    });
    // A finished task answers "not found" to a kill, which containerd's
    // forced delete (a kill of all first) takes as done.
    let out = c.ctr(&["task", "kill", "--all", "--signal", "KILL", id]);
    assert!(
        !out.status.success() && text(&out).contains("not found"),
        "{}",
        text(&out)
    );
    ctr_ok(c, &["task", "rm", "--force", id]);
    ctr_ok(c, &["containers", "rm", id]);
    assert!(!c.runtime_root().join(id).exists());
}

/// `ctr containers checkpoint --task` (containerd pauses the task, the
/// shim checkpoints it left running into containerd's directory, containerd
/// archives it and resumes the task), then `ctr containers restore --live`.
#[test]
fn ctr_checkpoint_leaves_it_running_and_restore_goes_on() {
    let c = Containerd::start();
    import_busybox(&c);
    let events = c.events();
    let id = unique_id("ckpt-live");
    let pid = run_counter(&c, &id);
    let before = counter_at_least(pid, 10);
    let reference = format!("snaprun-checkpoint/{id}:1");
    ctr_ok(&c, &["containers", "checkpoint", "--task", &id, &reference]);
    let ctid = format!("\"container_id\":\"{id}\"");
    events.wait_line("/tasks/checkpointed", &[&ctid]);
    // Left running, and resumed by containerd: the same process counts on.
    assert_eq!(task_pid(&c, &id), Some(pid));
    counter_at_least(pid, before + 3);
    let images = ctr_ok(&c, &["images", "ls", "-q"]);
    assert!(images.contains(&reference), "{images}");

    ctr_ok(&c, &["task", "kill", "--signal", "KILL", &id]);
    wait_for("the task to stop", || {
        (c.task_status(&id) == "STOPPED").then_some(())
    });
    ctr_ok(&c, &["task", "rm", &id]);
    ctr_ok(&c, &["containers", "rm", &id]);

    ctr_ok(&c, &["containers", "restore", "--live", &id, &reference]);
    check_restored_then_kill(&c, &id, before);
}

/// A checkpoint with `exit` (containerd.runc.v1.CheckpointOptions, sent to
/// the shim as containerd sends it: `ctr` 1.6 sends options only to runc's
/// runtimes): the task stops, its exit is published, snaprun's container
/// is gone; the directory, made into a checkpoint image, restores it.
#[test]
fn checkpoint_with_exit_stops_the_task_and_restores_from_the_directory() {
    let c = Containerd::start();
    import_busybox(&c);
    let events = c.events();
    let id = unique_id("ckpt-exit");
    let pid = run_counter(&c, &id);
    let before = counter_at_least(pid, 10);
    let spec = fs::read(bundle(&c, &id).join("config.json")).unwrap();
    let dir = c.tmp.path().join("ckpt-exit-dir");
    fs::create_dir(&dir).unwrap();
    let options = CheckpointOptions {
        exit: true,
        file_locks: true,
        ..Default::default()
    };
    let task = shim_client(&c, &id);
    task.checkpoint(
        ctx(),
        &CheckpointTaskRequest {
            id: id.clone(),
            path: dir.display().to_string(),
            options: Some(pack(&options).unwrap()).into(),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("checkpoint: {e:?}\n{}", c.log()));
    // Stopped when the request returns, and containerd was told.
    assert_eq!(c.task_status(&id), "STOPPED");
    let ctid = format!("\"container_id\":\"{id}\"");
    events.wait_line("/tasks/checkpointed", &[&ctid]);
    events.wait_line("/tasks/exit", &[&ctid, "\"exit_status\":137"]);
    assert!(
        !c.runtime_root().join(&id).exists(),
        "snaprun's container {id} is left after the checkpoint"
    );
    assert!(
        fs::read_dir(&dir).unwrap().next().is_some(),
        "{} is empty",
        dir.display()
    );
    ctr_ok(&c, &["task", "rm", &id]);
    ctr_ok(&c, &["containers", "rm", &id]);

    let reference = format!("snaprun-checkpoint/{id}:exit");
    import_checkpoint(&c, &dir, &spec, &reference);
    ctr_ok(&c, &["containers", "restore", "--live", &id, &reference]);
    // A restored task can be checkpointed again (its stdio, the shim's new
    // pipes, is recorded as inherited), and runs on.
    wait_for("the restored task to run", || task_pid(&c, &id));
    let again = format!("snaprun-checkpoint/{id}:again");
    ctr_ok(&c, &["containers", "checkpoint", "--task", &id, &again]);
    check_restored_then_kill(&c, &id, before);
}

/// What is refused, each naming what: an exec's task, options snaprun
/// cannot honour, another options type, a container with an exec'd
/// process (containerd resumes it, and it counts on); and a create from
/// a checkpoint image that holds no snapshot.
#[test]
fn refusals_name_the_exec_the_option_and_the_process() {
    let c = Containerd::start();
    import_busybox(&c);
    let id = unique_id("ckpt-err");
    let pid = run_counter(&c, &id);
    counter_at_least(pid, 3);
    let task = shim_client(&c, &id);
    let dir = c.tmp.path().join("ckpt-err-dir");
    fs::create_dir(&dir).unwrap();
    let request = |task_id: &str, options: Option<Any>| CheckpointTaskRequest {
        id: task_id.to_string(),
        path: dir.display().to_string(),
        options: options.into(),
        ..Default::default()
    };

    ctr_ok(
        &c,
        &[
            "task",
            "exec",
            "--detach",
            "--exec-id",
            "sleeper",
            &id,
            "sleep",
            "1000",
        ],
    );
    let e = task
        .checkpoint(ctx(), &request("sleeper", None))
        .unwrap_err();
    let (code, msg) = status_of(e);
    assert_eq!(code, Code::FAILED_PRECONDITION, "{msg}");
    assert!(
        msg.contains(&format!("exec sleeper of container {id}")) && msg.contains("init task"),
        "{msg}"
    );

    let full = CheckpointOptions {
        cgroups_mode: "full".into(),
        ..Default::default()
    };
    let e = task
        .checkpoint(ctx(), &request(&id, Some(pack(&full).unwrap())))
        .unwrap_err();
    let (code, msg) = status_of(e);
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    assert!(
        msg.contains("cgroups_mode") && msg.contains("\"full\"") && msg.contains(&id),
        "{msg}"
    );
    let other = Any {
        type_url: "containerd.runc.v1.Options".into(),
        ..Default::default()
    };
    let e = task
        .checkpoint(ctx(), &request(&id, Some(other)))
        .unwrap_err();
    let (code, msg) = status_of(e);
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("containerd.runc.v1.Options"), "{msg}");

    // The exec'd sleep is outside the init's tree: snaprun refuses, the
    // task is resumed and counts on.
    let out = c.ctr(&["containers", "checkpoint", "--task", &id, "refused:1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("outside its init's process tree"),
        "{}",
        text(&out)
    );
    wait_for("the task to be resumed", || {
        (c.task_status(&id) == "RUNNING").then_some(())
    });
    let now = counter(pid).unwrap();
    counter_at_least(pid, now + 3);
    assert!(fs::read_dir(&dir).unwrap().next().is_none());

    // A checkpoint image whose directory holds no snapshot: the create
    // fails, saying so, and leaves no task.
    let spec = fs::read(bundle(&c, &id).join("config.json")).unwrap();
    let empty = c.tmp.path().join("ckpt-empty");
    fs::create_dir(&empty).unwrap();
    import_checkpoint(&c, &empty, &spec, "broken:1");
    let broken = unique_id("ckpt-broken");
    let out = c.ctr(&["containers", "restore", "--live", &broken, "broken:1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("snaprun restore of container {broken} failed"))
            && text(&out).contains("not a snapshot"),
        "{}",
        text(&out)
    );
    assert_eq!(c.task_status(&broken), "");
    ctr_ok(&c, &["containers", "rm", &broken]);
}
