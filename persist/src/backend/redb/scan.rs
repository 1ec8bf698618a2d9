//! A scan of the entries' names in name order: a range of the table, read in one read
//! transaction for [`PAGE`] names at a time, then in a new one from right after the last name
//! read, so that a scan consumed slowly never keeps a snapshot of the database (and the file
//! space it pins) for longer than a page. No page of names is held: each name is read from the
//! range as it is asked for.

use std::ops::Bound;
use std::sync::Arc;

use ::redb::{Range, ReadableDatabase};

use super::{ENTRIES, Shared, failed};
use crate::Error;
use crate::backend::PAGE;
use crate::error::IoOp;

/// The names that begin with a prefix, from a range the scan renews every [`PAGE`] names.
pub(super) struct Scan {
    shared: Arc<Shared>,
    prefix: String,
    /// The range being read, with how many names it gave; `None` before the first page and
    /// between two.
    range: Option<(Range<'static, &'static str, &'static [u8]>, usize)>,
    /// The last name of the page before, where the next range starts after.
    after: Option<String>,
    done: bool,
}

impl Scan {
    /// The names of `shared`'s entries that begin with `prefix`; the first range is opened at
    /// once, so that a database that cannot be read is an error here.
    pub(super) fn new(shared: Arc<Shared>, prefix: String) -> Result<Scan, Error> {
        let mut scan = Scan {
            shared,
            prefix,
            range: None,
            after: None,
            done: false,
        };
        scan.range = Some((scan.open()?, 0));
        Ok(scan)
    }

    /// A range in a new read transaction, from right after the last name read (from the prefix
    /// at first).
    fn open(&self) -> Result<Range<'static, &'static str, &'static [u8]>, Error> {
        let path = &self.shared.path;
        let txn = self
            .shared
            .db
            .begin_read()
            .map_err(failed(path, IoOp::Read))?;
        let entries = txn.open_table(ENTRIES).map_err(failed(path, IoOp::Read))?;
        let start = match &self.after {
            Some(after) => Bound::Excluded(after.as_str()),
            None if self.prefix.is_empty() => Bound::Unbounded,
            None => Bound::Included(self.prefix.as_str()),
        };
        // The range keeps the transaction's snapshot as long as it lives.
        entries
            .range::<&str>((start, Bound::Unbounded))
            .map_err(failed(path, IoOp::Read))
    }

    fn read(&mut self) -> Result<Option<String>, Error> {
        if self.done {
            return Ok(None);
        }
        let (range, given) = match &mut self.range {
            Some(open) => open,
            None => self.range.insert((self.open()?, 0)),
        };
        let name = match range.next() {
            Some(Ok((name, _))) => name.value().to_owned(),
            Some(Err(error)) => return Err(failed(&self.shared.path, IoOp::Read)(error)),
            None => {
                self.done = true;
                return Ok(None);
            }
        };
        // (A call of memcmp per name, even for the empty prefix, costs a listing a sixth.)
        if !self.prefix.is_empty() && !name.starts_with(self.prefix.as_str()) {
            self.done = true;
            return Ok(None);
        }
        *given += 1;
        if *given == PAGE {
            // The page is read: its snapshot goes, the next page starts after this name.
            self.range = None;
            self.after = Some(name.clone());
        }
        Ok(Some(name))
    }
}

impl Iterator for Scan {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read() {
            Ok(name) => name.map(Ok),
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}
