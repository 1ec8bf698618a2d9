//! The bytes a load parses. Small files are read into the heap; on Linux, a file of at least
//! [`MAP_AT_LEAST`] bytes is mapped read-only instead, so its bytes stay in the page cache and
//! never become anonymous memory of the process: the peak of a large load is the value, not the
//! value plus the file (BENCHMARKS.md, "Memory model").
//!
//! A mapping has one danger a read does not: when another program truncates the file while it
//! is parsed, touching a page past the new end raises SIGBUS, which kills the process. [`guard`]
//! makes that impossible for the pages persist maps: a SIGBUS handler that, for a fault inside
//! a registered mapping, maps zeros over the rest of it and notes the fault. The parser then
//! meets NUL bytes (never valid JSON, never a valid frame) and the load reports the truncation
//! as [`Error::Io`] instead of whatever the zeros looked like. Faults anywhere else go to the
//! handler that was installed before persist's (Rust's own, or the default action), so they
//! crash exactly as they would have.

use std::io;
use std::ops::Deref;
use std::path::Path;

use crate::error::{Error, IoOp};

/// Files of at least this many bytes (1 MiB) are mapped on Linux rather than read. Below it, a
/// read costs less than setting up a mapping, and the copy is too small to matter.
pub(crate) const MAP_AT_LEAST: u64 = 1 << 20;

/// A file's bytes, read or mapped.
pub(crate) enum Contents {
    Read(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped(Mapped),
}

impl Deref for Contents {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Contents::Read(bytes) => bytes,
            #[cfg(target_os = "linux")]
            Contents::Mapped(mapped) => &mapped.map,
        }
    }
}

impl Contents {
    /// `Ok` unless another program truncated the mapped file while persist read it, in which
    /// case what was parsed included zeros that were never in the file. Checked after parsing
    /// and before the parse's outcome is trusted, so the truncation is what the caller hears of.
    pub(crate) fn intact(&self, path: &Path) -> Result<(), Error> {
        match self {
            Contents::Read(_) => Ok(()),
            #[cfg(target_os = "linux")]
            Contents::Mapped(mapped) if mapped.registration.faulted() => Err(Error::Io {
                path: path.to_owned(),
                op: IoOp::Read,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "another program truncated the file while it was being read; nothing was \
                     loaded",
                ),
            }),
            #[cfg(target_os = "linux")]
            Contents::Mapped(_) => Ok(()),
        }
    }

    /// Maps the first `len` bytes of `file`, or `None` when it cannot be done safely (the
    /// SIGBUS guard could not be installed, another handler replaced it, every guard slot is in
    /// use, or the file system does not map): the caller then reads the file.
    #[cfg(target_os = "linux")]
    pub(crate) fn map(file: &std::fs::File, len: u64) -> Option<Contents> {
        let len = usize::try_from(len).ok()?;
        // SAFETY: the mapping is read-only and owned by this value. What makes a file mapping
        // unsound is the file changing underneath it: a change of bytes is a race the parser
        // sees as data (as a concurrent `read` would), and a truncation raises SIGBUS, which
        // the registration below turns into zeros and a reported error. The registration is
        // made before any byte is read and dropped before the mapping is.
        let map = unsafe { memmap2::MmapOptions::new().len(len).populate().map(file) }.ok()?;
        let registration = guard::register(map.as_ptr() as usize, map.len())?;
        Some(Contents::Mapped(Mapped { registration, map }))
    }
}

/// A registered read-only mapping. Field order matters: the registration is dropped (the guard
/// forgets the range) before the mapping is unmapped, so the handler never claims a fault in a
/// range that may since have been mapped by someone else.
#[cfg(target_os = "linux")]
pub(crate) struct Mapped {
    registration: guard::Registration,
    map: memmap2::Mmap,
}

/// Whether `bytes` lie inside a mapping persist holds: bytes that another program can change
/// (or a truncation can turn into zeros) while they are parsed. serde_json reads every byte
/// once, by safe indexing, so changing bytes are only data to it; a parser that reads a byte
/// twice and trusts the second reading to match the first (sonic-rs does) must not be shown
/// them.
#[cfg(feature = "simd")]
pub(crate) fn holds(bytes: &[u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        guard::holds(bytes.as_ptr() as usize)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = bytes;
        false
    }
}

#[cfg(target_os = "linux")]
mod guard {
    //! The SIGBUS handler and its table of mappings. The handler may run at any moment on any
    //! thread, so the table is a fixed array of atomics (no allocation, no lock) and the
    //! handler calls nothing but `mmap` and, for foreign faults, the previous handler.

    use std::mem::MaybeUninit;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use libc::{c_int, c_void, siginfo_t};

    /// How many mappings may be in use at once; a load beyond that reads instead.
    const SLOTS: usize = 64;

    /// `start` of a slot being filled in: the handler ignores it.
    const CLAIMED: usize = 1;

    struct Slot {
        /// 0 when free, [`CLAIMED`] while being filled in, else the mapping's first address.
        start: AtomicUsize,
        /// One past the mapping's last page.
        end: AtomicUsize,
        faulted: AtomicBool,
    }

    static TABLE: [Slot; SLOTS] = [const {
        Slot {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            faulted: AtomicBool::new(false),
        }
    }; SLOTS];

    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

    /// Set by the first registration: until then no mapping exists, and [`holds`] looks no
    /// further.
    static EVER: AtomicBool = AtomicBool::new(false);

    /// The SIGBUS action before persist's, to which foreign faults go.
    static PREVIOUS: OnceLock<Action> = OnceLock::new();

    struct Action(libc::sigaction);

    // SAFETY: a `sigaction` is plain data (a handler address, flags and a signal mask); it is
    // written once before the handler that reads it is installed, and never changed.
    unsafe impl Sync for Action {}
    unsafe impl Send for Action {}

    /// A slot of the table, held while its mapping is in use.
    pub(crate) struct Registration {
        slot: &'static Slot,
    }

    impl Registration {
        /// Whether a page of the mapping was lost to a truncation and read as zeros.
        pub(crate) fn faulted(&self) -> bool {
            self.slot.faulted.load(Ordering::Acquire)
        }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            self.slot.start.store(0, Ordering::Release);
        }
    }

    /// Registers the mapping at `start..start + len`, or `None` when the guard is not in place
    /// (then the mapping must not be read).
    pub(crate) fn register(start: usize, len: usize) -> Option<Registration> {
        if !installed() {
            return None;
        }
        let page = PAGE_SIZE.load(Ordering::Relaxed);
        let end = start.checked_add(len)?.checked_next_multiple_of(page)?;
        let slot = TABLE.iter().find(|slot| {
            slot.start
                .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        EVER.store(true, Ordering::Relaxed);
        slot.faulted.store(false, Ordering::Relaxed);
        slot.end.store(end, Ordering::Relaxed);
        // Release: a handler that sees `start` sees `end` and `faulted` as set above.
        slot.start.store(start, Ordering::Release);
        Some(Registration { slot })
    }

    /// Whether `address` lies inside a registered mapping. A mapping registered by this thread
    /// is seen (its registration happened before); so is any other, since its caller holds
    /// the `Registration` while the bytes are in use.
    #[cfg(feature = "simd")]
    pub(crate) fn holds(address: usize) -> bool {
        EVER.load(Ordering::Relaxed)
            && TABLE.iter().any(|slot| {
                let start = slot.start.load(Ordering::Acquire);
                start > CLAIMED && start <= address && address < slot.end.load(Ordering::Relaxed)
            })
    }

    /// Whether persist's handler is the current SIGBUS action, installing it the first time.
    /// Checked before every mapping: a program that installs its own SIGBUS handler later
    /// replaces persist's, and its loads then read instead of mapping.
    fn installed() -> bool {
        static INSTALL: OnceLock<bool> = OnceLock::new();
        let installed = *INSTALL.get_or_init(|| {
            // SAFETY: sysconf and sigaction are called with valid arguments; the handler is
            // installed only once PREVIOUS and PAGE_SIZE, which it reads, are set.
            unsafe {
                let page = libc::sysconf(libc::_SC_PAGESIZE);
                let Ok(page @ 1..) = usize::try_from(page) else {
                    return false;
                };
                PAGE_SIZE.store(page, Ordering::Relaxed);
                let Some(previous) = current() else {
                    return false;
                };
                if PREVIOUS.set(Action(previous)).is_err() {
                    return false;
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigbus as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) == 0
            }
        });
        installed
            && current()
                .is_some_and(|action| action.sa_sigaction == on_sigbus as *const () as usize)
    }

    fn current() -> Option<libc::sigaction> {
        let mut action = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only queries; the old action is written in full on success.
        let queried =
            unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), action.as_mut_ptr()) == 0 };
        // SAFETY: initialized by the successful call above.
        queried.then(|| unsafe { action.assume_init() })
    }

    extern "C" fn on_sigbus(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for SIGBUS,
        // si_addr is the faulting address.
        let address = unsafe { (*info).si_addr() } as usize;
        for slot in &TABLE {
            let start = slot.start.load(Ordering::Acquire);
            if start <= CLAIMED || address < start {
                continue;
            }
            let end = slot.end.load(Ordering::Relaxed);
            if address >= end {
                continue;
            }
            let page = address & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
            // SAFETY: `page..end` lies inside a mapping persist owns and only reads; replacing
            // it with anonymous zero pages is what a truncated tail should read as. mmap is a
            // plain system call, safe in a signal handler.
            let zeros = unsafe {
                libc::mmap(
                    page as *mut c_void,
                    end - page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return;
            }
            break;
        }
        // SAFETY: forwards the signal as the kernel delivered it.
        unsafe { forward(signal, info, context) }
    }

    /// Hands a fault that is not persist's to the previous action. For the default action
    /// (terminate with a core dump) or `SIG_IGN` (which the kernel does not honour for a fault),
    /// persist's handler is removed and the access faults again, with the default outcome.
    unsafe fn forward(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
        match PREVIOUS.get() {
            Some(Action(previous))
                if previous.sa_sigaction != libc::SIG_DFL
                    && previous.sa_sigaction != libc::SIG_IGN =>
            {
                // SAFETY: the previous handler was installed with these flags for this signal,
                // so it has the signature the flags say.
                unsafe {
                    if previous.sa_flags & libc::SA_SIGINFO != 0 {
                        let handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                            std::mem::transmute(previous.sa_sigaction);
                        handler(signal, info, context);
                    } else {
                        let handler: extern "C" fn(c_int) =
                            std::mem::transmute(previous.sa_sigaction);
                        handler(signal);
                    }
                }
            }
            _ => {
                // SAFETY: installs the default action; sigaction is async-signal-safe.
                unsafe {
                    let mut default: libc::sigaction = std::mem::zeroed();
                    default.sa_sigaction = libc::SIG_DFL;
                    libc::sigemptyset(&mut default.sa_mask);
                    libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
                }
            }
        }
    }
}
