//! The seam: the driver's calls as a trait, each returning the raw
//! `CUresult` on failure. [`crate::LibCuda`] is the real one; everything
//! above it ([`crate::Client`]) is tested against a fake.

use crate::state::ProcessState;
use crate::uuid::GpuPair;
use crate::Error;

/// A `CUresult` other than `CUDA_SUCCESS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CuError(pub u32);

/// The oldest driver API with the process checkpoint calls: CUDA 12.4,
/// which driver branch 550 implements.
pub const MIN_DRIVER_API: i32 = 12040;

/// The CUDA driver's process checkpoint calls.
pub trait Driver {
    /// `cuDriverGetVersion`: the CUDA version the driver implements, as
    /// `1000 * major + 10 * minor` (580 drivers give 13000).
    fn version(&self) -> Result<i32, CuError>;
    /// `cuCheckpointProcessGetState`.
    fn get_state(&self, pid: i32) -> Result<ProcessState, CuError>;
    /// `cuCheckpointProcessLock` with `timeoutMs` (0 would wait for ever).
    fn lock(&self, pid: i32, timeout_ms: u32) -> Result<(), CuError>;
    /// `cuCheckpointProcessCheckpoint`.
    fn checkpoint(&self, pid: i32) -> Result<(), CuError>;
    /// `cuCheckpointProcessRestore`, with `gpuPairs` when `pairs` is not
    /// empty.
    fn restore(&self, pid: i32, pairs: &[GpuPair]) -> Result<(), CuError>;
    /// `cuCheckpointProcessUnlock`.
    fn unlock(&self, pid: i32) -> Result<(), CuError>;
    /// `cuCheckpointProcessGetRestoreThreadId`.
    fn restore_thread_id(&self, pid: i32) -> Result<i32, CuError>;
    /// The code's name as the driver gives it (`cuGetErrorName`), if it can.
    fn error_name(&self, _code: u32) -> Option<String> {
        None
    }
    /// The kernel module's version (`580.65.06`), for messages.
    fn module_version(&self) -> Option<String> {
        None
    }
}

/// The name of a `CUresult`: the driver's, else this crate's table, else
/// the number.
pub(crate) fn name_of(driver: &dyn Driver, code: u32) -> String {
    driver
        .error_name(code)
        .or_else(|| crate::ffi::result_name(code).map(str::to_string))
        .unwrap_or_else(|| format!("unknown CUresult {code}"))
}

/// `NotAvailable` unless the driver API `version` has the checkpoint calls.
/// `module` (the kernel module's version) is only for the message.
pub fn check_version(version: i32, module: Option<&str>) -> Result<(), Error> {
    if version >= MIN_DRIVER_API {
        return Ok(());
    }
    let driver = module.map(|m| format!("driver {m}, ")).unwrap_or_default();
    Err(Error::NotAvailable {
        reason: format!(
            "the driver ({driver}CUDA {}.{}) is older than driver 550 (CUDA 12.4), the first with the process checkpoint API",
            version / 1000,
            (version % 1000) / 10
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_drivers_are_refused_with_the_version_found() {
        assert!(check_version(12040, None).is_ok());
        assert!(check_version(13000, Some("580.65.06")).is_ok());
        let e = check_version(12020, Some("535.104.05")).unwrap_err();
        assert!(matches!(e, Error::NotAvailable { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("driver 535.104.05")
                && msg.contains("CUDA 12.2")
                && msg.contains("older than driver 550"),
            "{msg}"
        );
    }
}
