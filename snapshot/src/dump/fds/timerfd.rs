//! timerfds: clock, settime flags, time left, interval and unread
//! expirations, from fdinfo.
//!
//! A periodic timer that expired is re-armed by the kernel only when it is
//! read (or asked with `timerfd_gettime`); until then fdinfo shows one tick
//! and no time left. So the dumper first calls `timerfd_gettime` on its
//! duplicate of the fd, which counts the missed periods into the ticks and
//! re-arms the timer without consuming anything, then reads fdinfo.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::FileKind;
use crate::sys::proc::{parse_fdinfo, parse_timespec, FdInfo};

const TFD_TIMER_ABSTIME: u32 = 1;

/// The setting of the timerfd `dup` (a duplicate of the target's fd).
pub(super) fn dump_timerfd(dup: &OwnedFd) -> Result<FileKind, String> {
    let mut cur = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    // SAFETY: timerfd_gettime writes one itimerspec into the live local.
    if unsafe { libc::timerfd_gettime(dup.as_raw_fd(), &mut cur) } < 0 {
        return Err(format!(
            "timerfd_gettime: {}",
            std::io::Error::last_os_error()
        ));
    }
    let path = format!("/proc/self/fdinfo/{}", dup.as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    timerfd(&parse_fdinfo(&text)?, clock_now)
}

/// A timerfd's setting. `now_ns` reads the timer's clock: for an absolute
/// timer the time left is turned into the expiration on that clock.
fn timerfd(
    info: &FdInfo,
    now_ns: impl FnOnce(i32) -> std::io::Result<u64>,
) -> Result<FileKind, String> {
    let field = |name: &str| {
        info.field(name)
            .ok_or_else(|| format!("timerfd: no {name} in fdinfo"))
    };
    let clockid: i32 = field("clockid")?
        .parse()
        .map_err(|_| "timerfd: bad clockid".to_string())?;
    let ticks: u64 = field("ticks")?
        .parse()
        .map_err(|_| "timerfd: bad ticks".to_string())?;
    let settime_flags = u32::from_str_radix(field("settime flags")?, 8)
        .map_err(|_| "timerfd: bad settime flags".to_string())?;
    let value_ns =
        parse_timespec(field("it_value")?).ok_or_else(|| "timerfd: bad it_value".to_string())?;
    let interval_ns = parse_timespec(field("it_interval")?)
        .ok_or_else(|| "timerfd: bad it_interval".to_string())?;
    let armed = value_ns != 0 || interval_ns != 0;
    let deadline_ns = if armed && settime_flags & TFD_TIMER_ABSTIME != 0 {
        let now = now_ns(clockid).map_err(|e| format!("timerfd: reading clock {clockid}: {e}"))?;
        Some(now + value_ns)
    } else {
        None
    };
    Ok(FileKind::TimerFd {
        clockid,
        settime_flags,
        value_ns,
        interval_ns,
        ticks,
        deadline_ns,
    })
}

/// `clock_gettime(clockid)` in nanoseconds.
fn clock_now(clockid: i32) -> std::io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local.
    if unsafe { libc::clock_gettime(clockid, &mut ts) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::parse_fdinfo;

    const REL: &str = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 2\n\
                       settime flags: 00\nit_value: (0, 976331378)\nit_interval: (0, 5000000)\n";

    #[test]
    fn relative_timer_keeps_the_time_left() {
        let info = parse_fdinfo(REL).unwrap();
        let kind = timerfd(&info, |_| panic!("a relative timer needs no clock")).unwrap();
        assert_eq!(
            kind,
            FileKind::TimerFd {
                clockid: 1,
                settime_flags: 0,
                value_ns: 976_331_378,
                interval_ns: 5_000_000,
                ticks: 2,
                deadline_ns: None
            }
        );
    }

    #[test]
    fn absolute_timer_gets_its_deadline() {
        let text = REL
            .replace("clockid: 1", "clockid: 0")
            .replace("settime flags: 00", "settime flags: 03")
            .replace("(0, 976331378)", "(99, 1)");
        let info = parse_fdinfo(&text).unwrap();
        let kind = timerfd(&info, |c| {
            assert_eq!(c, 0);
            Ok(1_000)
        })
        .unwrap();
        let FileKind::TimerFd {
            deadline_ns,
            settime_flags,
            ..
        } = kind
        else {
            panic!("{kind:?}")
        };
        assert_eq!(settime_flags, 3);
        assert_eq!(deadline_ns, Some(99_000_000_001 + 1_000));
    }

    #[test]
    fn missing_fields_are_named() {
        let info = parse_fdinfo("flags:\t02\nclockid: 1\n").unwrap();
        assert!(timerfd(&info, |_| Ok(0)).unwrap_err().contains("ticks"));
    }
}
