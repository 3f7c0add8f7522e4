//! `linux.seccomp` with libseccomp: the default action, architectures,
//! flags, and per-syscall rules with argument comparisons. Syscall names the
//! library does not know (newer than it) are skipped, as runc does.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext,
    ScmpSyscall,
};

use super::error::{Error, Result};
use super::spec::Seccomp;

fn action(
    field: &str,
    name: &str,
    errno: Option<u32>,
    default_errno: Option<u32>,
) -> Result<ScmpAction> {
    let errno = errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32;
    let parsed = match name {
        "SCMP_ACT_NOTIFY" => {
            return Err(Error::NotImplemented(format!("{field}: SCMP_ACT_NOTIFY")))
        }
        "SCMP_ACT_ERRNO" | "SCMP_ACT_TRACE" => ScmpAction::from_str(name, Some(errno)),
        _ => ScmpAction::from_str(name, None),
    };
    parsed.map_err(|_| Error::invalid(field, format!("unknown action {name:?}")))
}

/// Builds the filter (without loading it): every field is checked here.
pub fn build(s: &Seccomp) -> Result<ScmpFilterContext> {
    let f = "linux.seccomp";
    let default = action(
        &format!("{f}.defaultAction"),
        &s.default_action,
        None,
        s.default_errno_ret,
    )?;
    let lib = |what: String| {
        move |e: libseccomp::error::SeccompError| Error::invalid(what, e.to_string())
    };
    let mut ctx = ScmpFilterContext::new(default).map_err(lib(format!("{f}.defaultAction")))?;
    // The filter must not set no_new_privs by itself: that is the config's say.
    ctx.set_ctl_nnp(false).map_err(lib(f.to_string()))?;
    for (i, a) in s.architectures.iter().enumerate() {
        let field = format!("{f}.architectures[{i}]");
        let arch = ScmpArch::from_str(a)
            .map_err(|_| Error::invalid(&field, format!("unknown architecture {a:?}")))?;
        ctx.add_arch(arch).map_err(lib(field))?;
    }
    for (i, flag) in s.flags.iter().enumerate() {
        let attr = match flag.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => ScmpFilterAttr::CtlLog,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => ScmpFilterAttr::CtlSsb,
            "SECCOMP_FILTER_FLAG_TSYNC" => ScmpFilterAttr::CtlTsync,
            other => {
                return Err(Error::invalid(
                    format!("{f}.flags[{i}]"),
                    format!("unknown flag {other:?}"),
                ))
            }
        };
        ctx.set_filter_attr(attr, 1)
            .map_err(lib(format!("{f}.flags[{i}]")))?;
    }
    for (i, rule) in s.syscalls.iter().enumerate() {
        let field = format!("{f}.syscalls[{i}]");
        let act = action(
            &format!("{field}.action"),
            &rule.action,
            rule.errno_ret,
            s.default_errno_ret,
        )?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        for (j, a) in rule.args.iter().enumerate() {
            let op = ScmpCompareOp::from_str(&a.op).map_err(|_| {
                Error::invalid(
                    format!("{field}.args[{j}].op"),
                    format!("unknown op {:?}", a.op),
                )
            })?;
            let cmp = match op {
                // The spec's value is the mask, valueTwo the datum.
                ScmpCompareOp::MaskedEqual(_) => {
                    ScmpArgCompare::new(a.index, ScmpCompareOp::MaskedEqual(a.value), a.value_two)
                }
                op => ScmpArgCompare::new(a.index, op, a.value),
            };
            cmps.push((a.index, cmp));
        }
        for name in &rule.names {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "unknown syscall: rule skipped");
                continue;
            };
            let mut indexes: Vec<u32> = cmps.iter().map(|(i, _)| *i).collect();
            indexes.sort_unstable();
            indexes.dedup();
            let res = if cmps.is_empty() {
                ctx.add_rule(act, sc).map(|_| ())
            } else if indexes.len() == cmps.len() {
                let all: Vec<ScmpArgCompare> = cmps.iter().map(|(_, c)| *c).collect();
                ctx.add_rule_conditional(act, sc, &all).map(|_| ())
            } else {
                // Several comparisons of one argument: any of them matches.
                cmps.iter()
                    .try_for_each(|(_, c)| ctx.add_rule_conditional(act, sc, &[*c]).map(|_| ()))
            };
            res.map_err(lib(format!("{field} ({name})")))?;
        }
    }
    Ok(ctx)
}

/// Builds and loads the filter into this process.
pub fn load(s: &Seccomp) -> Result<()> {
    let ctx = build(s)?;
    ctx.load()
        .map_err(|e| Error::invalid("linux.seccomp", format!("load the filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::spec::{SeccompArg, Syscall};

    fn profile() -> Seccomp {
        Seccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            syscalls: vec![Syscall {
                names: vec!["mkdir".into(), "no_such_syscall_at_all".into()],
                action: "SCMP_ACT_ERRNO".into(),
                errno_ret: Some(1),
                args: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn builds_and_skips_unknown_syscalls() {
        build(&profile()).unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let mut p = profile();
        p.syscalls[0].action = "SCMP_ACT_NOPE".into();
        let msg = build(&p).err().unwrap().to_string();
        assert!(msg.contains("linux.seccomp.syscalls[0].action"), "{msg}");
        let mut p = profile();
        p.syscalls[0].args = vec![SeccompArg {
            index: 0,
            value: 1,
            value_two: 0,
            op: "SCMP_CMP_WHAT".into(),
        }];
        let msg = build(&p).err().unwrap().to_string();
        assert!(msg.contains("syscalls[0].args[0].op"), "{msg}");
        let mut p = profile();
        p.architectures = vec!["SCMP_ARCH_Z80".into()];
        let msg = build(&p).err().unwrap().to_string();
        assert!(msg.contains("architectures[0]"), "{msg}");
    }
}
