//! Generations: the last good versions of a state file, kept by the saves that replaced them
//! (`Options::generations`). Each save over a file that reads as whole keeps that file as
//! `<name>.gen-<N>`, N one more than the newest generation there, and removes the generations
//! past the number kept once the new file is in place. A generation is the replaced file
//! itself under a second name (a hard link: nothing is copied) where it has no other name, a
//! copy of its bytes otherwise. It is made before the new file is renamed into place, in the
//! same directory, so the directory sync that makes the rename durable makes it durable too.

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::commit::{Target, bytes, stage};
use super::dir::{Dir, Kind, Stat};
use super::faults::fault;
use super::names::{self, Sibling};
use super::{Disk, io_error};
use crate::error::{Error, IoOp};

/// A generation a save made of the file it replaces: removed again if the save fails (dropped
/// unfinished), kept by [`finish`](Generation::finish).
#[must_use = "a generation is removed again unless the save finishes it"]
pub(crate) struct Generation {
    dir: Arc<Dir>,
    name: OsString,
    /// The state file's name.
    state: OsString,
    /// The replaced file itself, when the generation is a second name of it: made private
    /// (0600) once the new file has taken the state file's name.
    linked: Option<super::backup::Identity>,
    /// Whether the name is removed on drop (a save that failed).
    placed: bool,
    /// The generations past the number kept, removed once the new file is in place.
    stale: Vec<OsString>,
}

/// Keeps the file `target` names (open as `current`, described by `stat`) as its newest
/// generation. Fails only where a copy was needed and could not be made: the save stops
/// before anything changed.
pub(crate) fn keep(
    disk: &Disk,
    target: &Target,
    current: &File,
    stat: &Stat,
) -> Result<Generation, Error> {
    let mut numbers =
        numbers_in(&target.dir, &target.name).map_err(io_error(&target.named, IoOp::Read))?;
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let next = numbers
        .first()
        .map_or(Some(1), |newest| newest.checked_add(1));
    let stale = numbers
        .iter()
        // The one about to be made counts as one of those kept.
        .skip(disk.generations.saturating_sub(1))
        .map(|&number| names::name_for(&target.name, Sibling::Generation(number)))
        .collect();
    let mut generation = Generation {
        dir: Arc::clone(&target.dir),
        name: OsString::new(),
        state: target.name.clone(),
        linked: None,
        placed: false,
        stale,
    };
    // Numbers run out only where a file planted beside it claims the last ones: the save goes
    // on without a generation, and removes none.
    let none_kept = |mut generation: Generation| {
        generation.stale.clear();
        Ok(generation)
    };
    let Some(mut next) = next else {
        return none_kept(generation);
    };
    // The file itself under a second name, where it has no other (a file with more names is
    // copied: making the generation private must not change the others), and only if the
    // name linked is still that file.
    if stat.nlink == 1 {
        loop {
            let name = names::name_for(&target.name, Sibling::Generation(next));
            match fault(IoOp::CreateTemp, target.dir.path())
                .and_then(|()| target.dir.link(&target.name, &name))
            {
                Ok(()) => {
                    let same = target.dir.stat(&name).ok().flatten().is_some_and(|linked| {
                        linked.ino == stat.ino && linked.dev == stat.dev && linked.nlink == 2
                    });
                    if !same {
                        let _ = target.dir.remove_file(&name);
                        break;
                    }
                    generation.name = name;
                    generation.placed = true;
                    generation.linked = Some(super::backup::Identity::from_stat(stat));
                    return Ok(generation);
                }
                // Another save made that number meanwhile: the next one.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    match next.checked_add(1) {
                        Some(number) => next = number,
                        None => return none_kept(generation),
                    }
                }
                Err(_) => break,
            }
        }
    }
    // A copy of the bytes of the file opened (not of whatever the name holds now), under a
    // number no file holds.
    if stat.size > disk.max_size {
        return Err(super::read::too_large(
            &target.named,
            stat.size,
            disk.max_size,
        ));
    }
    let data = super::backup::read_opened(current, stat.size, &target.named)?;
    let name = loop {
        let name = names::name_for(&target.name, Sibling::Generation(next));
        if target.dir.stat(&name).ok().flatten().is_none() {
            break name;
        }
        match next.checked_add(1) {
            Some(number) => next = number,
            None => return none_kept(generation),
        }
    };
    let (copy, _) = super::backup::copy_target(target, &name)?;
    let staged = stage(disk, &copy, bytes(&data))?;
    let (renamed, placed) = staged.install(disk, &copy);
    generation.name = name;
    generation.placed = renamed.is_some();
    placed?;
    Ok(generation)
}

impl Generation {
    /// Whether the generation is a second name of the replaced file (not a copy).
    pub(crate) fn linked(&self) -> bool {
        self.linked.is_some()
    }

    /// Once the new file is in place: makes a linked generation private (0600) where the
    /// names the save made (`names`) are all the file has, and removes the generations past
    /// the number kept. Best effort: the generation that matters is in place.
    pub(crate) fn finish(mut self, names: u64) {
        self.placed = false;
        if let Some(linked) = self.linked.take()
            && !super::backup::settle_link(&self.dir, &self.state, &self.name, linked, names)
        {
            // Not replaced after all: the older generations stay too.
            return;
        }
        for stale in &self.stale {
            let _ = fault(IoOp::Remove, self.dir.path()).and_then(|()| self.dir.remove_file(stale));
        }
    }

    /// The commit point of a transaction has passed: the generation stays whatever happens
    /// next.
    pub(crate) fn hold(&mut self) {
        self.placed = false;
    }
}

impl Drop for Generation {
    /// Removes the generation of a save that failed.
    fn drop(&mut self) {
        if self.placed {
            let _ = fault(IoOp::Remove, self.dir.path())
                .and_then(|()| self.dir.remove_file(&self.name));
        }
    }
}

/// The numbers of the generations of the state file `name` in `dir`.
fn numbers_in(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<Vec<u64>> {
    Ok(dir
        .list()?
        .into_iter()
        .filter(|(_, kind)| *kind == Kind::File)
        .filter_map(|(candidate, _)| match names::classify(&candidate, name)? {
            Sibling::Generation(number) => Some(number),
            _ => None,
        })
        .collect())
}

/// The generations of the state file at `path` (in the directory `dir`, named `name`): their
/// numbers and paths, newest first.
pub(crate) fn list_in(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut numbers = numbers_in(dir, name)?;
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    Ok(numbers
        .into_iter()
        .map(|number| {
            let path = dir.join(names::name_for(name, Sibling::Generation(number)));
            (number, path)
        })
        .collect())
}
