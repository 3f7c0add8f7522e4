//! Hooks of config.json: each runs with the container's state JSON on its
//! stdin, with its own args, env and timeout; a failing hook fails the
//! operation (poststart and poststop ones only warn, as the spec says).

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::spec::Hook;
use super::state::OciState;

pub fn run_all(kind: &'static str, hooks: &[Hook], state: &OciState) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).map_err(|source| Error::Json {
        what: "encode the state for hooks".into(),
        source,
    })?;
    for h in hooks {
        tracing::debug!(kind, path = %h.path, "running hook");
        run(kind, h, &json)?;
    }
    Ok(())
}

fn run(kind: &'static str, h: &Hook, state: &[u8]) -> Result<()> {
    let fail = |msg: String| Error::Hook {
        kind,
        path: h.path.clone(),
        msg,
    };
    let mut cmd = Command::new(&h.path);
    if let Some((arg0, rest)) = h.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear()
        .envs(h.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                return Err(fail(match st.code() {
                    Some(c) => format!("exited with status {c}"),
                    None => format!("killed by signal {}", st.signal().unwrap_or(0)),
                }))
            }
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {}s", h.timeout.unwrap_or(0))));
        }
        sleep(Duration::from_millis(5));
    }
}
