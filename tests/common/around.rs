//! A memory store seen through a root of its own, with the feed a test chooses: a store "in
//! another process" (writes through one root do not reach the caches of another root in this
//! process) whose feed can fail or be scripted.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use persist::Error;
use persist::backend::{Backend, Condition, Entry, Feed, Memory, Stored, Written};

/// What a test's feed is: given the memory store, the prefixes and the poll interval.
pub type Watch = Box<
    dyn Fn(&Memory, &[String], Option<Duration>) -> Result<Option<Box<dyn Feed>>, Error>
        + Send
        + Sync,
>;

pub struct Around {
    pub memory: Arc<Memory>,
    pub root: &'static str,
    pub watch: Watch,
}

impl fmt::Debug for Around {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Around")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Backend for Around {
    fn root(&self) -> PathBuf {
        self.root.into()
    }
    fn locate(&self, name: &str) -> PathBuf {
        format!("{}{name}", self.root).into()
    }
    fn get(&self, name: &str) -> Result<Option<Stored>, Error> {
        self.memory.get(name)
    }
    fn watch(
        &self,
        prefixes: &[String],
        poll: Option<Duration>,
    ) -> Result<Option<Box<dyn Feed>>, Error> {
        (self.watch)(&self.memory, prefixes, poll)
    }
    fn put(&self, name: &str, entry: Entry<'_>, condition: &Condition) -> Result<Written, Error> {
        self.memory.put(name, entry, condition)
    }
    fn delete(&self, name: &str, condition: &Condition) -> Result<bool, Error> {
        self.memory.delete(name, condition)
    }
    fn list(&self) -> Result<Vec<String>, Error> {
        self.memory.list()
    }
}
