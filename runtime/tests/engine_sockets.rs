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
    ] {
        let mut case = Case::start_with(name, args, &[]);
        let pid = case.pid;
        case.trigger(pid, Trigger::Go);
        case.expect_pass(pid);
    }
}

/// Runs `snaprun checkpoint` on `case`, expects it to fail with a message
/// naming the pid, fd 42 and each of `words`, and the source to run on
/// untouched and PASS.
fn refused(mut case: Case, extra: &[&str], words: &[&str]) {
    let out = case.checkpoint(extra);
    let text = show_output("snaprun checkpoint", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {text}", case.name);
    for w in [format!("pid {}", case.pid), "fd 42".to_string()]
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

/// A UDP socket with a datagram queued is refused (snaprun does not keep
/// datagrams: re-sent, they would come from another address).
#[test]
fn udp_with_queued_datagrams_is_refused() {
    refused(
        Case::start_with("sock_refused", &["udp_queued"], &[]),
        &[],
        &["udp socket 127.0.0.1:", "queued datagrams"],
    );
}

/// Netlink, packet and raw sockets are refused, naming family and type,
/// and so are unix sockets with fds in flight.
#[test]
fn netlink_packet_raw_and_fd_passing_sockets_are_refused() {
    for (kind, words) in [
        ("netlink", &["netlink raw socket"][..]),
        ("packet", &["packet raw socket"]),
        ("raw", &["inet (IPv4) raw socket (protocol 1)"]),
        ("scm_rights", &["file descriptors in flight (SCM_RIGHTS)"]),
    ] {
        refused(Case::start_with("sock_refused", &[kind], &[]), &[], words);
    }
}
