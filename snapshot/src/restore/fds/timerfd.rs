//! timerfds: created on their clock and set again. A relative timer gets
//! the time it had left (the time spent checkpointed does not count); an
//! absolute one its expiration on its clock. Unread expirations come back
//! with `TFD_IOC_SET_TICKS`.

use crate::image::FileKind;
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;

/// `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: u64 = (1 << 30) | (8 << 16) | ((b'T' as u64) << 8);
const TFD_TIMER_ABSTIME: u32 = 1;

/// The `it_value` to set: the absolute deadline, the time left, or, for a
/// periodic timer that expired and was not read (the kernel re-arms it only
/// on read, so it shows no time left), one interval. `None`: disarmed.
pub fn first_expiry(value_ns: u64, interval_ns: u64, deadline_ns: Option<u64>) -> Option<u64> {
    if let Some(d) = deadline_ns {
        return Some(d.max(1));
    }
    match (value_ns, interval_ns) {
        (0, 0) => None,
        (0, i) => Some(i),
        (v, _) => Some(v),
    }
}

fn timespec(ns: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_ne_bytes());
    out[8..].copy_from_slice(&((ns % 1_000_000_000) as i64).to_ne_bytes());
    out
}

/// Creates the timerfd `kind` (restoring fd `fd`) in the target.
pub(super) fn timerfd(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    kind: &FileKind,
) -> Result<u64, RestoreError> {
    let FileKind::TimerFd {
        clockid,
        settime_flags,
        value_ns,
        interval_ns,
        ticks,
        deadline_ns,
    } = *kind
    else {
        unreachable!("not a timerfd: {kind:?}")
    };
    let what = format!("fd {fd}: timerfd on clock {clockid}");
    let new = remote.syscall(
        &format!("{what}: timerfd_create"),
        libc::SYS_timerfd_create,
        &[clockid as u64, (flags & libc::O_NONBLOCK) as u64],
    )?;
    let value = first_expiry(value_ns, interval_ns, deadline_ns);
    if value.is_some() || settime_flags != 0 {
        // A disarmed timer is set too when it has flags, so that they show.
        let mut its = timespec(interval_ns).to_vec();
        its.extend_from_slice(&timespec(value.unwrap_or(0)));
        let flags = if deadline_ns.is_some() {
            settime_flags
        } else {
            settime_flags & !TFD_TIMER_ABSTIME
        };
        let at = scratch.put(remote, &its)?;
        let r = remote.syscall(
            &format!("{what}: timerfd_settime"),
            libc::SYS_timerfd_settime,
            &[new, flags as u64, at, 0],
        );
        if let Err(e) = r {
            scratch.reset();
            return Err(e.into());
        }
    }
    if ticks > 0 {
        let at = scratch.put(remote, &ticks.to_ne_bytes())?;
        let r = remote.syscall(
            &format!("{what}: TFD_IOC_SET_TICKS {ticks}"),
            libc::SYS_ioctl,
            &[new, TFD_IOC_SET_TICKS, at],
        );
        scratch.reset();
        r?;
    }
    scratch.reset();
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn ioctl_number_is_the_kernels() {
        assert_eq!(TFD_IOC_SET_TICKS, 0x4008_5400);
    }

    #[test]
    fn first_expiry_rules() {
        assert_eq!(first_expiry(0, 0, None), None);
        assert_eq!(first_expiry(5, 0, None), Some(5));
        assert_eq!(first_expiry(5, 7, None), Some(5));
        assert_eq!(
            first_expiry(0, 7, None),
            Some(7),
            "expired, unread periodic"
        );
        assert_eq!(first_expiry(5, 0, Some(100)), Some(100));
    }

    #[test]
    fn periodic_timer_is_armed_and_given_its_ticks() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x1000);
        let kind = FileKind::TimerFd {
            clockid: libc::CLOCK_MONOTONIC,
            settime_flags: 0,
            value_ns: 1_500_000_000,
            interval_ns: 5_000_000,
            ticks: 3,
            deadline_ns: None,
        };
        timerfd(&mut fake, &mut scratch, 4, libc::O_NONBLOCK, &kind).unwrap();
        let nrs: Vec<i64> = fake.calls.iter().map(|c| c.1).collect();
        assert_eq!(
            nrs,
            [
                libc::SYS_timerfd_create,
                libc::SYS_timerfd_settime,
                libc::SYS_ioctl
            ]
        );
        assert_eq!(
            fake.calls[0].2,
            [libc::CLOCK_MONOTONIC as u64, libc::O_NONBLOCK as u64]
        );
        let its = &fake.memory[&fake.calls[1].2[2]];
        let word = |i: usize| i64::from_ne_bytes(its[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(
            (word(0), word(1), word(2), word(3)),
            (0, 5_000_000, 1, 500_000_000)
        );
        assert_eq!(fake.calls[1].2[1], 0, "relative");
        assert_eq!(fake.memory[&fake.calls[2].2[2]], 3u64.to_ne_bytes());
    }

    #[test]
    fn absolute_timer_is_set_to_its_deadline() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x1000);
        let kind = FileKind::TimerFd {
            clockid: libc::CLOCK_REALTIME,
            settime_flags: 3,
            value_ns: 10,
            interval_ns: 0,
            ticks: 0,
            deadline_ns: Some(2_000_000_007),
        };
        timerfd(&mut fake, &mut scratch, 4, 0, &kind).unwrap();
        assert_eq!(fake.calls.len(), 2, "no ticks to set");
        assert_eq!(fake.calls[1].2[1], 3, "ABSTIME | CANCEL_ON_SET");
        let its = &fake.memory[&fake.calls[1].2[2]];
        assert_eq!(its[16..24], 2i64.to_ne_bytes());
        assert_eq!(its[24..32], 7i64.to_ne_bytes());
    }
}
