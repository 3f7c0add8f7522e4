//! The C types of the CUDA driver's checkpoint API, as `cuda.h` (CUDA 12.8
//! and later, CUDA 13) declares them, with their sizes asserted at compile
//! time: the driver reads 64 bytes from every argument struct whatever
//! fields this build knows, and requires the reserved ones to be zero.

use std::ffi::{c_char, c_int, c_uint};

/// `CUresult`: 0 is success, anything else an error code.
pub type CuResultCode = c_uint;

/// `CUDA_SUCCESS`.
pub const CUDA_SUCCESS: CuResultCode = 0;
/// `CUDA_ERROR_TIMEOUT`: what a lock that ran out of `timeoutMs` returns.
pub const CUDA_ERROR_TIMEOUT: CuResultCode = 909;

/// `CUuuid`: a GPU's UUID, 16 raw bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CUuuid {
    pub bytes: [c_char; 16],
}

/// `CUcheckpointLockArgs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CUcheckpointLockArgs {
    /// Milliseconds to wait for the lock; 0 waits for ever.
    pub timeout_ms: c_uint,
    pub reserved0: c_uint,
    pub reserved1: [u64; 7],
}

/// `CUcheckpointCheckpointArgs`: all reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CUcheckpointCheckpointArgs {
    pub reserved: [u64; 8],
}

/// `CUcheckpointGpuPair`: restore what ran on `old_uuid` onto `new_uuid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CUcheckpointGpuPair {
    pub old_uuid: CUuuid,
    pub new_uuid: CUuuid,
}

/// `CUcheckpointRestoreArgs`: the GPU map, then reserved bytes
/// (`char reserved[52 - sizeof(void *)]; cuuint64_t reserved1`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CUcheckpointRestoreArgs {
    pub gpu_pairs: *mut CUcheckpointGpuPair,
    pub gpu_pairs_count: c_uint,
    pub reserved: [c_char; 44],
    pub reserved1: u64,
}

impl Default for CUcheckpointRestoreArgs {
    fn default() -> Self {
        CUcheckpointRestoreArgs {
            gpu_pairs: std::ptr::null_mut(),
            gpu_pairs_count: 0,
            reserved: [0; 44],
            reserved1: 0,
        }
    }
}

/// `CUcheckpointUnlockArgs`: all reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CUcheckpointUnlockArgs {
    pub reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<CUuuid>() == 16);
const _: () = assert!(std::mem::size_of::<CUcheckpointGpuPair>() == 32);
const _: () = assert!(std::mem::size_of::<CUcheckpointLockArgs>() == 64);
const _: () = assert!(std::mem::offset_of!(CUcheckpointLockArgs, timeout_ms) == 0);
const _: () = assert!(std::mem::size_of::<CUcheckpointCheckpointArgs>() == 64);
const _: () = assert!(std::mem::size_of::<CUcheckpointRestoreArgs>() == 64);
const _: () = assert!(std::mem::offset_of!(CUcheckpointRestoreArgs, gpu_pairs) == 0);
const _: () = assert!(std::mem::offset_of!(CUcheckpointRestoreArgs, gpu_pairs_count) == 8);
const _: () = assert!(std::mem::offset_of!(CUcheckpointRestoreArgs, reserved1) == 56);
const _: () = assert!(std::mem::size_of::<CUcheckpointUnlockArgs>() == 64);

// The entry points, as `cuda.h` declares them.
pub type CuInit = unsafe extern "C" fn(flags: c_uint) -> CuResultCode;
pub type CuDriverGetVersion = unsafe extern "C" fn(version: *mut c_int) -> CuResultCode;
pub type CuGetErrorName =
    unsafe extern "C" fn(error: CuResultCode, name: *mut *const c_char) -> CuResultCode;
pub type CuCheckpointProcessLock =
    unsafe extern "C" fn(pid: c_int, args: *mut CUcheckpointLockArgs) -> CuResultCode;
pub type CuCheckpointProcessCheckpoint =
    unsafe extern "C" fn(pid: c_int, args: *mut CUcheckpointCheckpointArgs) -> CuResultCode;
pub type CuCheckpointProcessRestore =
    unsafe extern "C" fn(pid: c_int, args: *mut CUcheckpointRestoreArgs) -> CuResultCode;
pub type CuCheckpointProcessUnlock =
    unsafe extern "C" fn(pid: c_int, args: *mut CUcheckpointUnlockArgs) -> CuResultCode;
/// `CUprocessState` is a C enum: an `int`-sized value.
pub type CuCheckpointProcessGetState =
    unsafe extern "C" fn(pid: c_int, state: *mut c_uint) -> CuResultCode;
pub type CuCheckpointProcessGetRestoreThreadId =
    unsafe extern "C" fn(pid: c_int, tid: *mut c_int) -> CuResultCode;

/// The names of the `CUresult` codes the checkpoint calls are documented to
/// return, and a few more that a missing or broken driver gives; used when
/// the driver cannot name a code itself (`cuGetErrorName`).
pub fn result_name(code: CuResultCode) -> Option<&'static str> {
    Some(match code {
        0 => "CUDA_SUCCESS",
        1 => "CUDA_ERROR_INVALID_VALUE",
        2 => "CUDA_ERROR_OUT_OF_MEMORY",
        3 => "CUDA_ERROR_NOT_INITIALIZED",
        4 => "CUDA_ERROR_DEINITIALIZED",
        34 => "CUDA_ERROR_STUB_LIBRARY",
        35 => "CUDA_ERROR_INSUFFICIENT_DRIVER",
        100 => "CUDA_ERROR_NO_DEVICE",
        101 => "CUDA_ERROR_INVALID_DEVICE",
        304 => "CUDA_ERROR_OPERATING_SYSTEM",
        400 => "CUDA_ERROR_INVALID_HANDLE",
        401 => "CUDA_ERROR_ILLEGAL_STATE",
        500 => "CUDA_ERROR_NOT_FOUND",
        600 => "CUDA_ERROR_NOT_READY",
        800 => "CUDA_ERROR_NOT_PERMITTED",
        801 => "CUDA_ERROR_NOT_SUPPORTED",
        802 => "CUDA_ERROR_SYSTEM_NOT_READY",
        803 => "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        909 => "CUDA_ERROR_TIMEOUT",
        999 => "CUDA_ERROR_UNKNOWN",
        _ => return None,
    })
}
