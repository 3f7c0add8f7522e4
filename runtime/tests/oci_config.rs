//! config.json as the container sees it: hostname, env, cwd, user and
//! groups, rlimits, no_new_privs, oom_score_adj, capabilities, mounts,
//! masked and read-only paths, read-only root, sysctl, cgroup limits, user
//! namespace, hooks and the console socket.

mod oci_support;

use std::fs;
use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use oci_support::{wait_for, Bundle};
use serde_json::{json, Value};

const FACTS: &str = r#"
echo host=$(hostname)
echo foo=$FOO
echo cwd=$(pwd)
echo id=$(id -u):$(id -g):$(id -G)
echo nofile=$(ulimit -n)
grep NoNewPrivs /proc/self/status
echo oom=$(cat /proc/self/oom_score_adj)
grep CapBnd /proc/self/status
grep ' /scratch ' /proc/mounts
grep ' /hostdir ' /proc/mounts
grep ' / ' /proc/mounts
cat /hostdir/hello
echo version=$(wc -c < /proc/version)
echo firmware=$(ls /sys/firmware | wc -l)
(echo x > /hostdir/w) 2>/dev/null || echo hostdir-readonly
(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null || echo procsys-readonly
echo ipfwd=$(cat /proc/sys/net/ipv4/ip_forward)
echo null=$(stat -c %t:%T /dev/null) fd=$(readlink /dev/fd)
echo tun=$(stat -c '%F %t:%T %a %u' /dev/net/tun)
echo done
exec sleep 1000
"#;

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
}

#[test]
fn the_container_sees_its_config() {
    let mut b = Bundle::new("config", &["sh", "-c", FACTS]);
    fs::create_dir(b.rootfs().join("work")).unwrap();
    let host = b.tmp.path().join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("hello"), "hello from the host\n").unwrap();
    let c = &mut b.config;
    c["hostname"] = "boxy".into();
    c["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("FOO=bar".into());
    c["process"]["cwd"] = "/work".into();
    c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]});
    c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    c["process"]["oomScoreAdj"] = 500.into();
    c["process"]["capabilities"] = json!({"bounding": ["CAP_CHOWN", "CAP_KILL"]});
    c["root"]["readonly"] = true.into();
    c["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "size=1m", "mode=1777"]}),
        json!({"destination": "/hostdir", "type": "bind", "source": host.to_str().unwrap(),
               "options": ["rbind", "ro"]}),
    ]);
    c["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push("/proc/version".into());
    c["linux"]["devices"] = json!([{"type": "c", "path": "/dev/net/tun", "major": 10, "minor": 200,
                                     "fileMode": 384, "uid": 1000, "gid": 0}]);
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    c["linux"]["resources"]["pids"] = json!({"limit": 20});
    let pid = b.create();
    b.ok("start");
    let out = b.wait_out("done");
    assert_eq!(line(&out, "host="), "host=boxy");
    assert_eq!(line(&out, "foo="), "foo=bar");
    assert_eq!(line(&out, "cwd="), "cwd=/work");
    assert_eq!(line(&out, "id="), "id=1000:1001:1001 10 20");
    assert_eq!(line(&out, "nofile="), "nofile=256");
    assert!(line(&out, "NoNewPrivs").ends_with('1'), "{out}");
    assert_eq!(line(&out, "oom="), "oom=500");
    // CAP_CHOWN is bit 0, CAP_KILL bit 5.
    assert!(line(&out, "CapBnd").ends_with("0000000000000021"), "{out}");
    let scratch = line(&out, "tmpfs /scratch ");
    assert!(
        scratch.contains("nosuid") && scratch.contains("size=1024k"),
        "{scratch}"
    );
    assert!(
        line(&out, "/dev/").contains(" /hostdir ") || out.contains(" /hostdir "),
        "{out}"
    );
    assert!(out.contains("hostdir-readonly"), "{out}");
    assert!(out.contains("hello from the host"), "{out}");
    assert!(out.contains("procsys-readonly"), "{out}");
    assert_eq!(line(&out, "version="), "version=0", "masked /proc/version");
    assert_eq!(
        line(&out, "firmware="),
        "firmware=0",
        "masked /sys/firmware"
    );
    assert_eq!(line(&out, "ipfwd="), "ipfwd=1");
    assert_eq!(line(&out, "null="), "null=1:3 fd=/proc/self/fd");
    assert_eq!(
        line(&out, "tun="),
        "tun=character special file a:c8 600 1000"
    );
    let root = out
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/"))
        .unwrap();
    assert!(root.split(' ').nth(3).unwrap().starts_with("ro"), "{root}");

    // The limits, read from the host in the init's cgroups.
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = |ctrl: &str| {
        cgroups
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, c, path) = (p.next()?, p.next()?, p.next()?);
                c.split(',').any(|x| x == ctrl).then(|| path.to_string())
            })
            .unwrap_or_else(|| panic!("no {ctrl} cgroup in {cgroups}"))
    };
    let mem = path("memory");
    assert!(mem.ends_with(&format!("snaprun-test/{}", b.id)), "{mem}");
    let limit =
        fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), "67108864");
    let pids = fs::read_to_string(format!("/sys/fs/cgroup/pids{}/pids.max", path("pids"))).unwrap();
    assert_eq!(pids.trim(), "20");
    let cg_dir = format!("/sys/fs/cgroup/pids{}", path("pids"));
    let out = b.cmd(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::path::Path::new(&cg_dir).exists(),
        "delete left {cg_dir}"
    );
}

#[test]
fn a_user_namespace_maps_root() {
    let mut b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "echo uid=$(id -u); cat /proc/self/uid_map; echo done",
        ],
    );
    // The mapped root must reach the rootfs.
    fs::set_permissions(b.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let c = &mut b.config;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let pid = b.create();
    let uid_map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    b.ok("start");
    let out = b.wait_out("done");
    assert!(out.contains("uid=0"), "{out}");
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let mut b = Bundle::new("hooks", &["sh", "-c", "echo ran; exit 0"]);
    let log = b.tmp.path().join("hooks");
    fs::create_dir(&log).unwrap();
    let host_hook = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order", dir = log.display())]})
    };
    // startContainer runs in the container, after the root switch.
    let in_container = json!({"path": "/bin/sh", "args": ["sh", "-c", "cat > /start.json"]});
    b.config["hooks"] = json!({
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [in_container],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")],
    });
    let pid = b.create();
    let order = fs::read_to_string(log.join("order")).unwrap();
    assert_eq!(order, "createRuntime\ncreateContainer\n");
    let st: Value =
        serde_json::from_slice(&fs::read(log.join("createRuntime.json")).unwrap()).unwrap();
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["pid"], pid);
    assert_eq!(st["status"], "creating");
    b.ok("start");
    b.wait_out("ran");
    let st: Value = wait_for("the startContainer hook", || {
        serde_json::from_slice(&fs::read(b.rootfs().join("start.json")).ok()?).ok()
    });
    assert_eq!(st["id"], b.id.as_str());
    let st: Value = serde_json::from_slice(&fs::read(log.join("poststart.json")).unwrap()).unwrap();
    assert_eq!(st["pid"], pid);
    b.wait_status("stopped");
    b.ok("delete");
    let order = fs::read_to_string(log.join("order")).unwrap();
    assert_eq!(
        order,
        "createRuntime\ncreateContainer\npoststart\npoststop\n"
    );
    let st: Value = serde_json::from_slice(&fs::read(log.join("poststop.json")).unwrap()).unwrap();
    assert_eq!(st["status"], "stopped");
}

#[test]
fn a_failing_create_hook_fails_create_and_cleans_up() {
    let mut b = Bundle::new("badhook", &["true"]);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]});
    b.write_config();
    let out = b.cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &b.id]);
    oci_support::assert_fails(
        &out,
        &["createRuntime hook /bin/sh", "exited with status 3"],
    );
    assert!(!b.root().join(&b.id).exists());
}

/// Receives one fd sent with SCM_RIGHTS.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this fd for us; we own it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd on the console socket")
}

#[test]
fn the_console_socket_gets_the_pty_master() {
    let mut b = Bundle::new(
        "console",
        &["sh", "-c", "tty; echo size=$(stty size); echo done"],
    );
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    b.write_config();
    let sock_path = b.tmp.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let st = b.cmd_to_files(&[
        "create",
        "--bundle",
        b.dir().to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    assert!(st.success(), "{}", b.err());
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(&conn);
    b.ok("start");
    let mut f = fs::File::from(master);
    let mut got = String::new();
    let mut buf = [0u8; 512];
    while !got.contains("done") {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(got.contains("/dev/pts/0"), "{got:?}");
    assert!(got.contains("size=30 100"), "{got:?}");
    assert_eq!(
        b.out(),
        "",
        "output went to the pty, not the inherited stdout"
    );
}

#[test]
fn seccomp_filters_the_container_and_its_execs() {
    for nnp in [true, false] {
        let mut b = Bundle::new(
            "seccomp",
            &[
                "sh",
                "-c",
                "mkdir /tmp/x 2>/dev/null || echo mkdir-denied; touch /tmp/y && echo touch-ok; \
                 grep Seccomp: /proc/self/status; echo done; exec sleep 1000",
            ],
        );
        b.config["process"]["noNewPrivileges"] = nnp.into();
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "not_a_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        b.create();
        b.ok("start");
        let out = b.wait_out("done");
        assert!(out.contains("mkdir-denied"), "nnp {nnp}: {out}");
        assert!(out.contains("touch-ok"), "nnp {nnp}: {out}");
        assert!(line(&out, "Seccomp:").ends_with('2'), "nnp {nnp}: {out}");
        assert!(!b.rootfs().join("tmp/x").exists());
        let ex = b.cmd(&["exec", &b.id, "mkdir", "/tmp/z"]);
        assert_eq!(ex.status.code(), Some(1), "exec got no filter (nnp {nnp})");
        assert!(!b.rootfs().join("tmp/z").exists());
    }
}

#[test]
fn namespaces_given_by_path_are_joined() {
    let mut a = Bundle::new("nsa", &["sh", "-c", "echo up; exec sleep 1000"]);
    a.config["hostname"] = "shared-uts".into();
    let pid_a = a.create();
    a.ok("start");
    a.wait_out("up");
    let mut b = Bundle::new(
        "nsb",
        &[
            "sh",
            "-c",
            "hostname; readlink /proc/self/ns/net; echo done",
        ],
    );
    b.config.as_object_mut().unwrap().remove("hostname");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        if n["type"] == "uts" || n["type"] == "network" {
            let name = if n["type"] == "uts" { "uts" } else { "net" };
            n["path"] = format!("/proc/{pid_a}/ns/{name}").into();
        }
    }
    b.create();
    b.ok("start");
    let out = b.wait_out("done");
    assert_eq!(line(&out, "shared"), "shared-uts", "{out}");
    let a_net = fs::read_link(format!("/proc/{pid_a}/ns/net")).unwrap();
    assert!(out.contains(a_net.to_str().unwrap()), "{out} vs {a_net:?}");
}
