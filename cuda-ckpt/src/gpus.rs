//! What `/proc` tells about GPUs and the processes that use them, without
//! the driver library: whether a process maps libcuda, which GPU device
//! nodes it holds open, and each GPU's UUID and minor number
//! (`/proc/driver/nvidia/gpus/BUS/information`, written by the kernel
//! module).

use std::io;
use std::path::Path;

use crate::uuid::GpuUuid;

/// Where the NVIDIA kernel module lists its GPUs.
pub const NVIDIA_GPUS_DIR: &str = "/proc/driver/nvidia/gpus";

/// One GPU as the kernel module describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    pub uuid: GpuUuid,
    /// The minor number of its `/dev/nvidiaN` node.
    pub minor: u32,
    /// PCI bus location (the directory's name).
    pub bus: String,
    pub model: String,
}

/// The path of the libcuda a process maps, from its `/proc/PID/maps` text.
pub fn libcuda_in_maps(maps: &str) -> Option<&str> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with("libcuda.so"))
        })
}

/// The libcuda that process `pid` maps, if any (a process that maps it is
/// taken as a CUDA process).
pub fn process_libcuda(pid: i32) -> io::Result<Option<String>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(libcuda_in_maps(&maps).map(str::to_string))
}

/// The GPU minor of a device path: `/dev/nvidia3` is 3; `/dev/nvidiactl`,
/// `/dev/nvidia-uvm` and others are not GPUs.
pub fn gpu_minor_of(link: &str) -> Option<u32> {
    let n = link.strip_prefix("/dev/nvidia")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The minors of the `/dev/nvidiaN` nodes process `pid` has open, sorted,
/// each once.
pub fn process_gpu_minors(pid: i32) -> io::Result<Vec<u32>> {
    let mut minors = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(link) = std::fs::read_link(e?.path()) else {
            continue; // closed meanwhile
        };
        if let Some(m) = link.to_str().and_then(gpu_minor_of) {
            minors.push(m);
        }
    }
    minors.sort_unstable();
    minors.dedup();
    Ok(minors)
}

/// Parses one `information` file (`Model:`, `GPU UUID:`, `Device Minor:`
/// lines, `Key: \t value`).
pub fn parse_information(bus: &str, text: &str) -> Option<Gpu> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    Some(Gpu {
        uuid: field("GPU UUID")?.parse().ok()?,
        minor: field("Device Minor")?.parse().ok()?,
        bus: bus.to_string(),
        model: field("Model").unwrap_or_default(),
    })
}

/// The GPUs listed under `dir` (normally [`NVIDIA_GPUS_DIR`]), by minor. No
/// directory (no NVIDIA module) is no GPUs.
pub fn list_gpus_in(dir: &Path) -> io::Result<Vec<Gpu>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut gpus = Vec::new();
    for e in entries {
        let e = e?;
        let bus = e.file_name().to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(e.path().join("information")) else {
            continue;
        };
        match parse_information(&bus, &text) {
            Some(g) => gpus.push(g),
            None => tracing::warn!(bus, "unreadable gpu information file"),
        }
    }
    gpus.sort_by_key(|g| g.minor);
    Ok(gpus)
}

/// This machine's GPUs.
pub fn list_gpus() -> io::Result<Vec<Gpu>> {
    list_gpus_in(Path::new(NVIDIA_GPUS_DIR))
}

/// The UUIDs of the GPUs whose device nodes process `pid` has open, looked
/// up among `gpus`. A minor that no GPU has is left out with a warning.
pub fn process_gpus(pid: i32, gpus: &[Gpu]) -> io::Result<Vec<GpuUuid>> {
    let mut out = Vec::new();
    for m in process_gpu_minors(pid)? {
        match gpus.iter().find(|g| g.minor == m) {
            Some(g) => out.push(g.uuid),
            None => tracing::warn!(pid, minor = m, "no gpu with this minor"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t GPU-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a10\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t 0000:19:00.0\nDevice Minor: \t 3\nGPU Excluded:\t No\n";

    #[test]
    fn libcuda_is_found_in_maps() {
        let maps = "\
55d0c000-55d0d000 r--p 00000000 08:01 12 /usr/bin/python3.11
7f1c20000000-7f1c20400000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libcudart.so.12
7f1c21000000-7f1c21400000 r-xp 00000000 08:01 98 /usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06
7f1c30000000-7f1c30001000 rw-s 00000000 00:05 7 /dev/nvidiactl
7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            libcuda_in_maps(maps),
            Some("/usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06")
        );
        // libcudart alone (the runtime) is not the driver.
        let no = "7f1c20000000-7f1c20400000 r-xp 00000000 08:01 99 /usr/lib/libcudart.so.12\n";
        assert_eq!(libcuda_in_maps(no), None);
        assert_eq!(libcuda_in_maps(""), None);
    }

    #[test]
    fn this_process_maps_no_libcuda() {
        let pid = std::process::id() as i32;
        assert_eq!(process_libcuda(pid).unwrap(), None);
        assert!(process_libcuda(-1).is_err());
    }

    #[test]
    fn gpu_minors_come_from_device_names() {
        assert_eq!(gpu_minor_of("/dev/nvidia0"), Some(0));
        assert_eq!(gpu_minor_of("/dev/nvidia15"), Some(15));
        for not in [
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia",
            "/dev/null",
        ] {
            assert_eq!(gpu_minor_of(not), None, "{not}");
        }
    }

    #[test]
    fn information_files_give_uuid_and_minor() {
        let g = parse_information("0000:19:00.0", INFO).unwrap();
        assert_eq!(g.minor, 3);
        assert_eq!(
            g.uuid.to_string(),
            "GPU-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a10"
        );
        assert_eq!(g.model, "NVIDIA H100 80GB HBM3");
        assert_eq!(parse_information("x", "Model: foo\n"), None);
    }

    #[test]
    fn gpus_are_listed_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let gpus = dir.path().join("gpus");
        for (bus, minor, last) in [("0000:3b:00.0", 1, "11"), ("0000:19:00.0", 0, "10")] {
            std::fs::create_dir_all(gpus.join(bus)).unwrap();
            let text = INFO
                .replace("Device Minor: \t 3", &format!("Device Minor: \t {minor}"))
                .replace("2a10", &format!("2a{last}"));
            std::fs::write(gpus.join(bus).join("information"), text).unwrap();
        }
        let list = list_gpus_in(&gpus).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].minor, list[0].bus.as_str()), (0, "0000:19:00.0"));
        assert!(list[1].uuid.to_string().ends_with("2a11"));
        // No NVIDIA module: no GPUs, not an error.
        assert_eq!(list_gpus_in(&dir.path().join("none")).unwrap(), vec![]);
    }

    #[test]
    fn a_process_without_gpu_nodes_has_no_gpus() {
        let pid = std::process::id() as i32;
        assert_eq!(process_gpu_minors(pid).unwrap(), Vec::<u32>::new());
        assert_eq!(process_gpus(pid, &[]).unwrap(), vec![]);
    }
}
