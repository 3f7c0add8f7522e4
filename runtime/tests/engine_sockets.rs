//! Sockets across checkpoint/restore (`tests/programs/sock_*.c`): TCP and
//! UDP sockets in every state but an open connection, TCP connections with
//! `--tcp-close`, unix sockets, and the sockets checkpoint refuses.

mod common;

use common::{proc_state, roundtrip, show_output, tracer_pid, Case, Trigger};

/// Listening TCP sockets (IPv4 and IPv6): re-bound to the same address with
/// their options, flags and backlog, and accepting connections.
#[test]
fn listening_tcp_sockets() {
    roundtrip("sock_listen");
}

/// Bound, unbound and connected TCP/UDP sockets (IPv4/IPv6) keep their
/// addresses, peers, options and flags, and work.
#[test]
fn bound_and_connected_inet_sockets() {
    roundtrip("sock_inet");
}

/// The programs pass without snaprun (so a failure above is the engine's).
#[test]
fn socket_programs_pass_plain() {
    for (name, args) in [
        ("sock_listen", &[][..]),
        ("sock_inet", &[]),
        ("sock_tcp_close", &["alive"]),
        ("sock_unix", &[]),
        ("sock_unix_log", &[]),
    ] {
        let mut case = Case::start_with(name, args, &[]);
        let pid = case.pid;
        case.trigger(pid, Trigger::Go);
        case.expect_pass(pid);
    }
}

/// Runs `snaprun checkpoint` on `case`, expects it to fail with a message
/// naming the pid, `fd` and each of `words`, and the source to run on
/// untouched and PASS.
fn refused_at(mut case: Case, fd: i32, words: &[&str]) {
    let out = case.checkpoint(&[]);
    let text = show_output("snaprun checkpoint", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {text}", case.name);
    for w in [format!("pid {}", case.pid), format!("fd {fd}:")]
        .iter()
        .map(String::as_str)
        .chain(words.iter().copied())
    {
        assert!(
            stderr.contains(w),
            "{}: the message does not say {w:?}\n{text}",
            case.name
        );
    }
    assert!(case.source_running(), "{}: the source died", case.name);
    assert_eq!(tracer_pid(case.pid), Some(0), "{}: still traced", case.name);
    assert!(
        !matches!(proc_state(case.pid), Some('t') | Some('T')),
        "{}: the source is left stopped",
        case.name
    );
    assert!(
        !case.image().join("manifest.json").exists(),
        "{}: a failed checkpoint left a manifest",
        case.name
    );
    case.go();
    case.expect_pass(case.pid);
}

/// [`refused_at`] fd 42.
fn refused(case: Case, words: &[&str]) {
    refused_at(case, 42, words)
}

/// A UDP socket with a datagram queued is refused (snaprun does not keep
/// datagrams: re-sent, they would come from another address).
#[test]
fn udp_with_queued_datagrams_is_refused() {
    refused(
        Case::start_with("sock_refused", &["udp_queued"], &[]),
        &["udp socket 127.0.0.1:", "queued datagrams"],
    );
}

/// Netlink, packet and raw sockets are refused, naming family and type,
/// and so are unix sockets with fds in flight or connected to a socket of
/// another process.
#[test]
fn netlink_packet_raw_and_fd_passing_sockets_are_refused() {
    for (kind, words) in [
        ("netlink", &["netlink raw socket"][..]),
        ("packet", &["packet raw socket"]),
        ("raw", &["inet (IPv4) raw socket (protocol 1)"]),
        ("scm_rights", &["file descriptors in flight (SCM_RIGHTS)"]),
        ("unix_outside", &["outside the process"]),
        ("unix_outside_listener", &["outside the process"]),
    ] {
        refused(Case::start_with("sock_refused", &[kind], &[]), words);
    }
}

/// A listener with a connection waiting to be accepted is refused without
/// `--tcp-close`; the source's connections keep working.
#[test]
fn accept_queue_is_refused_without_tcp_close() {
    refused_at(
        Case::start_with("sock_tcp_close", &["alive"], &[]),
        40,
        &[
            "listening tcp socket 127.0.0.1:",
            "1 connection(s) waiting to be accepted",
            "--tcp-close",
        ],
    );
}

/// An established TCP connection is refused without `--tcp-close`, naming
/// both ends; the source's connections keep working.
#[test]
fn open_tcp_connections_are_refused_without_tcp_close() {
    refused(
        Case::start_with("sock_tcp_close", &["alive", "noqueue"], &[]),
        &[
            "tcp connection 127.0.0.1:",
            "-> 127.0.0.1:",
            "established",
            "--tcp-close",
        ],
    );
}

/// With `--tcp-close`, open connections (accepted, client, and one waiting
/// in the accept queue) come back reset by their peer, and the listeners
/// serve new connections.
#[test]
fn tcp_close_restores_connections_reset_and_the_server_serves_on() {
    let mut case = Case::start("sock_tcp_close");
    let out = case.checkpoint(&["--tcp-close"]);
    case.assert_ok("snaprun checkpoint --tcp-close", &out);
    case.reap_source_killed();
    let pid = case.restore_ok();
    case.go();
    case.expect_pass(pid);
}

/// Unix sockets: socketpairs (stream, datagram, seqpacket) with queued
/// data both ways, listeners on a path and an abstract name with accepted
/// connections, a socket whose peer was closed, a datagram socket
/// connected one way; names, modes, options and message boundaries kept.
#[test]
fn unix_sockets() {
    roundtrip("sock_unix");
}

/// One image restored twice, one after the other: the first restore's
/// socket files are stale by then and make way, TCP ports are free again.
#[test]
fn sockets_restore_twice_from_one_image() {
    for name in ["sock_unix", "sock_tcp_close"] {
        let mut case = Case::start(name);
        let out = case.checkpoint(&["--tcp-close"]);
        case.assert_ok("snaprun checkpoint --tcp-close", &out);
        case.reap_source_killed();
        for _ in 0..2 {
            let pid = case.restore_ok();
            case.go();
            case.expect_pass(pid);
            case.wait_pid_gone(pid);
            case.reset();
        }
    }
}

/// A datagram socket connected to a named socket of another process (like
/// a syslog client) is connected to that name again.
#[test]
fn unix_datagram_connected_outside() {
    roundtrip("sock_unix_log");
}

/// A file that is not a socket where a listener's socket file was: restore
/// refuses to remove it, names it, and leaves nothing behind.
#[test]
fn unix_socket_path_taken_by_a_file_fails_restore() {
    let mut case = Case::start("sock_unix");
    case.checkpoint_ok();
    let path = case.workdir().join("srv.sock");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "not a socket").unwrap();
    let out = case.restore(&[]);
    let text = show_output("snaprun restore", &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} exists and is not a socket", path.display())),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    case.assert_nothing_left("after a failed restore");
}

/// Restoring while the source still runs (`--leave-running`) fails at the
/// unix listener's path, which is still in use, naming it; the source's
/// socket file is left alone and the source passes.
#[test]
fn unix_socket_path_in_use_fails_restore() {
    let mut case = Case::start("sock_unix");
    let out = case.checkpoint(&["--leave-running"]);
    case.assert_ok("snaprun checkpoint --leave-running", &out);
    let out = case.restore(&[]);
    let text = show_output("snaprun restore", &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let path = case.workdir().join("srv.sock");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is the socket file of socket:[",
            path.display()
        )) && stderr.contains("still open"),
        "{text}"
    );
    case.go();
    case.expect_pass(case.pid);
    case.assert_nothing_left("after a failed restore");
}

/// A process in its own network namespace: its unix sockets are examined in
/// that namespace, and the socketpair comes back with its queues.
#[test]
fn unix_sockets_of_a_process_in_another_network_namespace() {
    roundtrip("sock_unix_netns");
}
