//! [`FileWriter`]: what a save's serializer writes into.

use std::fs::File;
use std::io::{self, Write};

/// The largest piece [`FileWriter`] hands to the file in one `write`: a file of up to 3.75 MiB
/// is one `write`, a larger one pays a system call per 3.75 MiB (why one piece beats many small
/// ones: BENCHMARKS.md, "What the suite changed"). A quarter MiB under 4 MiB so that the buffer
/// and the allocator's slack (glibc keeps the freed smaller buffers of the doubling, about
/// 132 KiB) stay under 4 MiB beside the value being saved (`cargo bench -- memory`).
pub(crate) const MAX_WRITE: usize = (4 << 20) - (256 << 10);

/// The writer a save's serializer writes into: collects a serializer's many small writes in a
/// buffer that grows as needed up to [`MAX_WRITE`], and hands the file whole buffers. A small
/// file costs one `write` and a buffer of its own size; a large one a `write` per [`MAX_WRITE`]
/// and never more than that much buffer (a `Vec` written at the end would hold the whole file
/// twice).
pub(crate) struct FileWriter<'f> {
    file: &'f File,
    buffer: Vec<u8>,
}

impl<'f> FileWriter<'f> {
    pub(crate) fn new(file: &'f File) -> Self {
        FileWriter {
            file,
            buffer: Vec::with_capacity(8 * 1024),
        }
    }

    /// Writes `data` to the file as it is, after what is buffered: for bytes prepared
    /// beforehand (framed files, backup copies), which copying into the buffer would only slow
    /// down.
    pub(crate) fn write_unbuffered(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.file.write_all(data)
    }

    /// A write the buffer has no room for: the buffer grows to [`MAX_WRITE`] or is handed to
    /// the file first; a piece of `MAX_WRITE` or more goes to the file directly.
    #[cold]
    fn write_beyond_capacity(&mut self, data: &[u8]) -> io::Result<()> {
        if self.buffer.len() + data.len() > MAX_WRITE {
            self.spill()?;
            if data.len() >= MAX_WRITE {
                return self.file.write_all(data);
            }
        }
        if data.len() > self.buffer.capacity() - self.buffer.len() {
            // Doubling, as `Vec` grows (the freed smaller buffers are reused by the next save,
            // which costs no page faults), but never past `MAX_WRITE`: a `Vec` would double
            // 2 MiB to 4 MiB and then fill all of it.
            let wanted = (self.buffer.len() + data.len())
                .max(self.buffer.capacity() * 2)
                .min(MAX_WRITE);
            self.buffer.reserve_exact(wanted - self.buffer.len());
        }
        self.buffer.extend_from_slice(data);
        Ok(())
    }

    #[cold]
    fn spill(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.buffer);
        self.buffer.clear();
        result
    }
}

impl Write for FileWriter<'_> {
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        // The hot path, taken by all but a few writes: the piece fits the room the buffer has.
        // It is the same test `extend_from_slice` makes, which the compiler then drops, so a
        // write costs what a write into a plain `Vec` costs.
        if data.len() <= self.buffer.capacity() - self.buffer.len() {
            self.buffer.extend_from_slice(data);
            return Ok(());
        }
        self.write_beyond_capacity(data)
    }

    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            self.spill()
        }
    }
}
