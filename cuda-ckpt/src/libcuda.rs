//! [`LibCuda`]: the driver library, opened with `dlopen` at run time.
//!
//! The library stays loaded for the life of the process (it is never
//! `dlclose`d: the CUDA driver does not support being unloaded), so the
//! function pointers resolved from it stay valid.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use crate::driver::{check_version, CuError, Driver};
use crate::ffi::*;
use crate::state::ProcessState;
use crate::uuid::GpuPair;
use crate::Error;

/// The library loaded by default.
pub const LIBCUDA_NAME: &str = "libcuda.so.1";
/// Environment variable naming another library to load instead (a path):
/// for drivers installed outside the loader's search path.
pub const LIBCUDA_ENV: &str = "SNAPRUN_LIBCUDA";

/// The loaded driver library and its checkpoint entry points.
pub struct LibCuda {
    path: String,
    version: i32,
    module_version: Option<String>,
    get_error_name: Option<CuGetErrorName>,
    lock: CuCheckpointProcessLock,
    checkpoint: CuCheckpointProcessCheckpoint,
    restore: CuCheckpointProcessRestore,
    unlock: CuCheckpointProcessUnlock,
    get_state: CuCheckpointProcessGetState,
    get_restore_tid: CuCheckpointProcessGetRestoreThreadId,
}

impl std::fmt::Debug for LibCuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibCuda")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("module_version", &self.module_version)
            .finish()
    }
}

/// The last `dlerror` message.
fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by the
    // loader, valid until the next dl* call on this thread; it is copied
    // at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// The kernel module's version from `/proc/driver/nvidia/version`
/// (`NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  …`).
pub(crate) fn kernel_module_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.starts_with(|c: char| c.is_ascii_digit())
                && w.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
}

struct Handle {
    path: String,
    raw: *mut c_void,
}

impl Handle {
    fn open(path: &str) -> Result<Handle, Error> {
        let c = CString::new(path).map_err(|_| Error::NotAvailable {
            reason: format!("{path:?} is not a valid library name"),
        })?;
        // SAFETY: dlopen with a NUL-terminated name; the result is checked
        // for null. Loading runs the library's initialisers, which is what
        // loading a driver library means.
        let raw = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if raw.is_null() {
            return Err(Error::NotAvailable {
                reason: format!("cannot load {path}: {}", dl_error()),
            });
        }
        Ok(Handle {
            path: path.to_string(),
            raw,
        })
    }

    /// The address of `name`, or `NotAvailable` naming the missing symbol.
    fn symbol(&self, name: &str) -> Result<*mut c_void, Error> {
        let c = CString::new(name).expect("symbol names have no NUL");
        // SAFETY: `raw` is a live handle from dlopen (never closed), `c` is
        // NUL-terminated; a null result is checked.
        let p = unsafe { libc::dlsym(self.raw, c.as_ptr()) };
        if p.is_null() {
            return Err(Error::NotAvailable {
                reason: format!(
                    "{} has no {name} (the process checkpoint API needs driver 570 or newer)",
                    self.path
                ),
            });
        }
        Ok(p)
    }
}

/// Casts a resolved symbol to its function type.
macro_rules! sym {
    ($h:expr, $name:literal, $ty:ty) => {{
        let p = $h.symbol($name)?;
        // SAFETY: the symbol was resolved by its C name from the driver
        // library, and `$ty` is the signature `cuda.h` declares for it
        // (crate::ffi); function and data pointers have one size here.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

impl LibCuda {
    /// Loads `$SNAPRUN_LIBCUDA` if set, else `libcuda.so.1` from the
    /// loader's search path.
    pub fn load_default() -> Result<LibCuda, Error> {
        match std::env::var(LIBCUDA_ENV) {
            Ok(p) if !p.is_empty() => LibCuda::load(&p),
            _ => LibCuda::load(LIBCUDA_NAME),
        }
    }

    /// Loads the driver library `path` (a name for the loader's search, or a
    /// path), checks its version, resolves the checkpoint calls and runs
    /// `cuInit(0)`. Any failure is [`Error::NotAvailable`] with the reason.
    pub fn load(path: &str) -> Result<LibCuda, Error> {
        let h = Handle::open(path)?;
        let driver_get_version = sym!(h, "cuDriverGetVersion", CuDriverGetVersion);
        let init = sym!(h, "cuInit", CuInit);
        let get_error_name = h
            .symbol("cuGetErrorName")
            .ok()
            // SAFETY: as in `sym!`: resolved by name, declared type.
            .map(|p| unsafe { std::mem::transmute::<*mut c_void, CuGetErrorName>(p) });
        let module_version = std::fs::read_to_string("/proc/driver/nvidia/version")
            .ok()
            .and_then(|t| kernel_module_version(&t));

        let mut version: c_int = 0;
        // SAFETY: cuDriverGetVersion writes one int through the pointer,
        // which points at a live local; it needs no cuInit.
        let r = unsafe { driver_get_version(&mut version) };
        if r != CUDA_SUCCESS {
            return Err(Error::NotAvailable {
                reason: format!(
                    "{path}: cuDriverGetVersion failed: {}",
                    result_name(r).unwrap_or("unknown CUresult")
                ),
            });
        }
        check_version(version, module_version.as_deref())?;

        let lib = LibCuda {
            path: path.to_string(),
            version,
            module_version,
            get_error_name,
            lock: sym!(h, "cuCheckpointProcessLock", CuCheckpointProcessLock),
            checkpoint: sym!(
                h,
                "cuCheckpointProcessCheckpoint",
                CuCheckpointProcessCheckpoint
            ),
            restore: sym!(h, "cuCheckpointProcessRestore", CuCheckpointProcessRestore),
            unlock: sym!(h, "cuCheckpointProcessUnlock", CuCheckpointProcessUnlock),
            get_state: sym!(
                h,
                "cuCheckpointProcessGetState",
                CuCheckpointProcessGetState
            ),
            get_restore_tid: sym!(
                h,
                "cuCheckpointProcessGetRestoreThreadId",
                CuCheckpointProcessGetRestoreThreadId
            ),
        };
        // SAFETY: cuInit takes a flags word (must be 0) and touches no
        // memory of ours.
        let r = unsafe { init(0) };
        if r != CUDA_SUCCESS {
            return Err(Error::NotAvailable {
                reason: format!(
                    "{path}: cuInit failed: {} ({r})",
                    lib.error_name(r)
                        .or_else(|| result_name(r).map(str::to_string))
                        .unwrap_or_else(|| "unknown CUresult".into())
                ),
            });
        }
        // The handle is deliberately leaked: see the module comment.
        std::mem::forget(h);
        tracing::debug!(path, version, "cuda driver loaded");
        Ok(lib)
    }

    /// What was loaded (the name or path given).
    pub fn path(&self) -> &str {
        &self.path
    }
}

fn check(r: CuResultCode) -> Result<(), CuError> {
    if r == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(CuError(r))
    }
}

impl Driver for LibCuda {
    fn version(&self) -> Result<i32, CuError> {
        Ok(self.version)
    }

    fn get_state(&self, pid: i32) -> Result<ProcessState, CuError> {
        let mut state: c_uint = 0;
        // SAFETY: the driver writes one CUprocessState (an int-sized enum)
        // through a pointer to a live local.
        check(unsafe { (self.get_state)(pid, &mut state) })?;
        Ok(ProcessState::from_raw(state))
    }

    fn lock(&self, pid: i32, timeout_ms: u32) -> Result<(), CuError> {
        let mut args = CUcheckpointLockArgs {
            timeout_ms,
            ..Default::default()
        };
        // SAFETY: `args` is a zeroed 64-byte CUcheckpointLockArgs (size
        // asserted in ffi) that lives across the call.
        check(unsafe { (self.lock)(pid, &mut args) })
    }

    fn checkpoint(&self, pid: i32) -> Result<(), CuError> {
        let mut args = CUcheckpointCheckpointArgs::default();
        // SAFETY: zeroed args struct of the declared size, live across the
        // call.
        check(unsafe { (self.checkpoint)(pid, &mut args) })
    }

    fn restore(&self, pid: i32, pairs: &[GpuPair]) -> Result<(), CuError> {
        let mut raw: Vec<CUcheckpointGpuPair> = pairs.iter().map(|p| p.to_cu()).collect();
        let mut args = CUcheckpointRestoreArgs::default();
        if !raw.is_empty() {
            args.gpu_pairs = raw.as_mut_ptr();
            args.gpu_pairs_count = raw.len() as c_uint;
        }
        // SAFETY: `args` is a zeroed CUcheckpointRestoreArgs whose
        // `gpu_pairs` is null or points at `raw`'s `gpu_pairs_count`
        // elements; both outlive the call, and the driver only reads them.
        let r = unsafe { (self.restore)(pid, &mut args) };
        drop(raw);
        check(r)
    }

    fn unlock(&self, pid: i32) -> Result<(), CuError> {
        let mut args = CUcheckpointUnlockArgs::default();
        // SAFETY: zeroed args struct of the declared size, live across the
        // call.
        check(unsafe { (self.unlock)(pid, &mut args) })
    }

    fn restore_thread_id(&self, pid: i32) -> Result<i32, CuError> {
        let mut tid: c_int = 0;
        // SAFETY: the driver writes one int through a pointer to a live
        // local.
        check(unsafe { (self.get_restore_tid)(pid, &mut tid) })?;
        Ok(tid)
    }

    fn error_name(&self, code: u32) -> Option<String> {
        let f = self.get_error_name?;
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName stores a pointer to a static string (or
        // fails for an unknown code); the out-pointer is a live local.
        let r = unsafe { f(code, &mut name) };
        if r != CUDA_SUCCESS || name.is_null() {
            return None;
        }
        // SAFETY: on success `name` is a NUL-terminated static string.
        Some(
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    fn module_version(&self) -> Option<String> {
        self.module_version.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_module_version_is_read_from_proc_text() {
        let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:14 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
        assert_eq!(kernel_module_version(text).as_deref(), Some("580.65.06"));
        let open =
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build\n";
        assert_eq!(kernel_module_version(open).as_deref(), Some("570.86.15"));
        assert_eq!(kernel_module_version("something else\n"), None);
    }
}
