//! Parsers for the `/proc/PID` files the dumper reads. Each takes the file's
//! text, so they are tested without a process.

use std::collections::HashMap;

/// One line of `/proc/PID/maps`, with the `VmFlags` of `/proc/PID/smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[vdso]`), empty for anonymous.
    pub name: String,
    /// Two-letter `VmFlags` codes (`gd`, `hg`, `nr`, ...).
    pub vm_flags: Vec<String>,
}

impl MapEntry {
    pub fn has_flag(&self, code: &str) -> bool {
        self.vm_flags.iter().any(|f| f == code)
    }

    pub fn range(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    let name = fields.next().unwrap_or("").trim_start().to_string();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    if perms.len() != 4 {
        return None;
    }
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode,
        name,
        vm_flags: Vec::new(),
    })
}

/// Parses `/proc/PID/smaps`: the maps lines with their `VmFlags`.
pub fn parse_smaps(text: &str) -> Result<Vec<MapEntry>, String> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let last = out
                .last_mut()
                .ok_or_else(|| format!("VmFlags before any mapping: {line:?}"))?;
            last.vm_flags = flags.split_whitespace().map(str::to_string).collect();
            continue;
        }
        let first = line.split(' ').next().unwrap_or("");
        // Attribute lines are "Name:   value"; mapping lines start with a
        // hex range.
        if first.ends_with(':') {
            continue;
        }
        out.push(parse_map_line(line).ok_or_else(|| format!("bad maps line: {line:?}"))?);
    }
    Ok(out)
}

/// `/proc/PID/status` as key → value.
pub fn parse_status(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The four ids of a `Uid:`/`Gid:` status line (real, effective, saved, fs).
pub fn parse_ids(value: &str) -> Option<[u32; 4]> {
    let v: Vec<u32> = value
        .split_whitespace()
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// `/proc/PID/stat`'s fields after the command name, numbered as in
/// proc(5): `field(3)` is the state.
pub struct Stat {
    rest: Vec<String>,
}

impl Stat {
    pub fn parse(text: &str) -> Option<Self> {
        let close = text.rfind(')')?;
        Some(Self {
            rest: text[close + 1..]
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }

    pub fn field(&self, n: usize) -> Option<u64> {
        self.rest.get(n.checked_sub(3)?)?.parse().ok()
    }

    pub fn field_i64(&self, n: usize) -> Option<i64> {
        self.rest.get(n.checked_sub(3)?)?.parse().ok()
    }
}

/// `/proc/PID/fdinfo/FD`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// `f_flags`, with `O_CLOEXEC` set when the fd is close-on-exec.
    pub flags: u32,
    pub mnt_id: u64,
    pub ino: u64,
    /// Every other line, for the kinds that need more (eventfd, epoll ...).
    pub extra: Vec<(String, String)>,
}

impl FdInfo {
    /// The value of the first `name:` line that is not one of the common
    /// four.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The values of every `name:` line (epoll's `tfd:` lines).
    pub fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.extra
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A timespec as fdinfo prints it, `(SEC, NSEC)`, in nanoseconds.
pub fn parse_timespec(v: &str) -> Option<u64> {
    let (s, ns) = v
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?
        .split_once(',')?;
    let s: u64 = s.trim().parse().ok()?;
    let ns: u64 = ns.trim().parse().ok()?;
    s.checked_mul(1_000_000_000)?.checked_add(ns)
}

/// One registration of an epoll fd, from its fdinfo `tfd:` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollEntry {
    /// The fd number it was registered with.
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
}

/// Parses the value of a `tfd:` line:
/// `3 events: 80000019 data: 1234567890  pos:0 ino:40e sdev:10`.
pub fn parse_epoll_entry(v: &str) -> Option<EpollEntry> {
    let mut words = v.split_whitespace();
    let tfd = words.next()?.parse().ok()?;
    let (mut events, mut data) = (None, None);
    while let Some(w) = words.next() {
        match w {
            "events:" => events = u32::from_str_radix(words.next()?, 16).ok(),
            "data:" => data = u64::from_str_radix(words.next()?, 16).ok(),
            _ => {}
        }
    }
    Some(EpollEntry {
        tfd,
        events: events?,
        data: data?,
    })
}

pub fn parse_fdinfo(text: &str) -> Result<FdInfo, String> {
    let mut info = FdInfo::default();
    let mut seen_flags = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "pos" => info.pos = v.parse().map_err(|_| format!("bad pos {v:?}"))?,
            "flags" => {
                info.flags = u32::from_str_radix(v, 8).map_err(|_| format!("bad flags {v:?}"))?;
                seen_flags = true;
            }
            "mnt_id" => info.mnt_id = v.parse().unwrap_or(0),
            "ino" => info.ino = v.parse().unwrap_or(0),
            _ => info.extra.push((k.to_string(), v.to_string())),
        }
    }
    if !seen_flags {
        return Err("no flags line".into());
    }
    Ok(info)
}

/// `/proc/PID/auxv` as (type, value) words.
pub fn parse_auxv(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1835302                    /usr/bin/cat
Size:                  4 kB
Rss:                   4 kB
VmFlags: rd mr mw me sd
7ffd5a1e0000-7ffd5a201000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
VmFlags: rd wr mr mw me gd ac
7f0000000000-7f0000001000 rw-s 00000000 00:01 1027                       /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms sd
7f0000002000-7f0000003000 ---p 00000000 00:00 0 
VmFlags: mr mw me nr
";

    #[test]
    fn parses_smaps_with_flags() {
        let maps = parse_smaps(SMAPS).unwrap();
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].name, "/usr/bin/cat");
        assert_eq!(maps[0].dev, (0xfe, 1));
        assert_eq!(maps[0].inode, 1835302);
        assert!(maps[0].read && !maps[0].write && !maps[0].shared);
        assert_eq!(maps[1].name, "[stack]");
        assert!(maps[1].has_flag("gd"));
        assert!(maps[2].shared);
        assert_eq!(maps[2].name, "/dev/zero (deleted)");
        assert_eq!(maps[3].name, "");
        assert!(!maps[3].read && maps[3].has_flag("nr"));
        assert_eq!(maps[3].end - maps[3].start, 0x1000);
    }

    #[test]
    fn rejects_garbage_maps_line() {
        assert!(parse_smaps("not a mapping line\n").is_err());
    }

    #[test]
    fn parses_stat_after_odd_comm() {
        let text = "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 1000 \
                    1000 100 18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 0 0 0 0 \
                    0 0 12288 16384 20480 140100 140200 140200 140300 0\n";
        let stat = Stat::parse(text).unwrap();
        assert_eq!(stat.field(4), Some(1));
        assert_eq!(stat.field(26), Some(4096));
        assert_eq!(stat.field(28), Some(140000));
        assert_eq!(stat.field(45), Some(12288));
        assert_eq!(stat.field(51), Some(140300));
    }

    #[test]
    fn parses_fdinfo() {
        let info = parse_fdinfo("pos:\t42\nflags:\t02100002\nmnt_id:\t25\nino:\t77\n").unwrap();
        assert_eq!(info.pos, 42);
        assert_eq!(info.flags, 0o2100002);
        assert_eq!(info.flags & libc::O_CLOEXEC as u32, libc::O_CLOEXEC as u32);
        assert_eq!((info.mnt_id, info.ino), (25, 77));
        assert!(parse_fdinfo("pos: 1\n").is_err());
    }

    #[test]
    fn parses_timerfd_and_epoll_fields() {
        let info = parse_fdinfo(
            "pos:\t0\nflags:\t02\nclockid: 1\nticks: 3\nsettime flags: 03\n\
             it_value: (99, 901260789)\nit_interval: (0, 5000000)\n\
             tfd:        3 events: 80000019 data:       1234567890  pos:0 ino:40e sdev:10\n\
             tfd:       17 events: 40000000 data:                7  pos:0 ino:40e sdev:10\n",
        )
        .unwrap();
        assert_eq!(info.field("clockid"), Some("1"));
        assert_eq!(info.field("settime flags"), Some("03"));
        assert_eq!(
            info.field("it_value").and_then(parse_timespec),
            Some(99_901_260_789)
        );
        assert_eq!(parse_timespec("(0, 5000000)"), Some(5_000_000));
        assert_eq!(parse_timespec("0, 5"), None);
        let entries: Vec<_> = info.fields("tfd").map(parse_epoll_entry).collect();
        assert_eq!(
            entries,
            [
                Some(EpollEntry {
                    tfd: 3,
                    events: 0x8000_0019,
                    data: 0x12_3456_7890
                }),
                Some(EpollEntry {
                    tfd: 17,
                    events: 0x4000_0000,
                    data: 7
                })
            ]
        );
        assert_eq!(parse_epoll_entry("3 events: 19"), None);
    }

    #[test]
    fn parses_ids() {
        assert_eq!(parse_ids("0\t1\t2\t3"), Some([0, 1, 2, 3]));
        assert_eq!(parse_ids("0 1"), None);
    }
}
