//! Rewriting a journal's log at the current version: every record after the last checkpoint
//! migrated (upcasts included) and stored again, atomically, with the old log kept as a
//! backup.

use std::path::PathBuf;

use super::Journal;
use super::format::{FILE_HEADER, FileHeader, seal_flush};
use super::reader::Reader;
use super::records;
use crate::Persisted;
use crate::error::{Error, IoOp};
use crate::shell::backup;
use crate::shell::commit::{Target, Write, bytes, replace_keeping};
use crate::shell::names::{self, Sibling};
use crate::shell::{io_error, read_exact_at};

/// What [`Journal::rewrite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rewritten {
    /// Records the log held after its last checkpoint.
    pub before: u64,
    /// Records it holds now, all at the current version (upcasts may have made more or
    /// fewer).
    pub after: u64,
    /// The old log, kept as `<log>.v<N>.bak` (N: the oldest version among its records);
    /// `None` when every record was at the current version already and nothing was rewritten.
    pub backup: Option<PathBuf>,
}

impl<E: Persisted, S: Persisted> Journal<E, S> {
    pub(super) fn rewrite_now(&self) -> Result<Rewritten, Error> {
        let mut state = self.shared.settle()?;
        let (base, end) = (state.base, state.end);
        // Every record decoded and encoded again before anything changes: a record that does
        // not migrate fails the rewrite with the log as it was.
        let read = state
            .file
            .try_clone()
            .map_err(io_error(&self.path, IoOp::Open))?;
        let mut reader = Reader::new(
            &self.path,
            read,
            FILE_HEADER as u64,
            end,
            self.settings.disk.max_size,
        )?;
        let (mut before, mut after) = (0, 0);
        let mut oldest = E::VERSION;
        let mut records = Vec::new();
        let mut encrypted_seen = false;
        while let Some(header) = reader.next_record() {
            let header = header?;
            let offset = reader.last_offset();
            // A record in clear among encrypted ones is refused here as by a replay, not
            // sealed with the key as if it had been written with it.
            records::check_sealing(
                &self.settings,
                &mut encrypted_seen,
                reader.data(),
                &self.path,
                offset,
            )?;
            before += 1;
            oldest = oldest.min(header.version);
            let values: Vec<E> =
                records::decode_values(&self.settings, &self.path, offset, reader.data())?;
            for value in &values {
                self.codec.encode(&mut records, value, &self.path)?;
                after += 1;
            }
        }
        if oldest == E::VERSION && before == after {
            return Ok(Rewritten {
                before,
                after,
                backup: None,
            });
        }
        let disk = &self.settings.disk;
        let target = Target::resolve(&self.path, disk.durability)?;
        // The backup: the old log itself under a second name (nothing copied), or a copy
        // where the file system has no hard links.
        let linked = match backup::link_current(&target) {
            Ok(linked) => Some(linked),
            Err(_) => {
                let mut old = vec![0; end as usize];
                read_exact_at(&state.file, &mut old, 0)
                    .map_err(io_error(&self.path, IoOp::Read))?;
                backup::write_copy(disk, &target, u64::from(oldest), &old)?;
                None
            }
        };
        let copied = target.dir.join(names::name_for(
            &target.name,
            Sibling::Backup(u64::from(oldest)),
        ));
        let mut log = FileHeader::new(base).to_bytes().to_vec();
        seal_flush(&mut records, FILE_HEADER as u64);
        log.extend_from_slice(&records);
        let (file, installed) = replace_keeping(disk, &target, &Write::default(), bytes(&log));
        if let Some(file) = file {
            let log_end = log.len() as u64;
            if let Err(error) =
                state.install(&self.path, file, (base, after, log_end), "rewritten log")
            {
                drop(state);
                self.shared.wake();
                return Err(error);
            }
        }
        drop(state);
        self.shared.wake();
        installed?;
        let backup = match linked {
            Some(linked) => linked.keep(disk, u64::from(oldest))?,
            None => copied,
        };
        Ok(Rewritten {
            before,
            after,
            backup: Some(backup),
        })
    }
}
