//! One directory watcher for every [`Live`](super::Live) handle and journal follower of the
//! process.
//!
//! A watcher per handle would cost an inotify instance each, and Linux allows a user 128 of
//! them by default (`fs.inotify.max_user_instances`): an application with more live files
//! would fail to open the 129th. Here one watcher watches each directory once, however many
//! handles watch files in it, and passes each event to the handles whose file it names.
//!
//! Two locks, taken in this order: `watcher` around `watch`/`unwatch` (and the bookkeeping that
//! decides them), `targets` around the table the event callback reads. The callback runs on
//! notify's thread and takes only `targets`, which is never held across a call into notify:
//! notify's `watch` waits for that same thread, so holding what the callback needs would
//! deadlock.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::core::lock;

/// Something that wants to hear about changes of one file, or of every file of a directory.
pub(crate) trait Watched: Send + Sync {
    /// The file `name` changed; `None` after lost events (any file may have changed).
    fn changed(&self, name: Option<&OsStr>);
}

/// The name a registration for every file of its directory is made under.
pub(crate) const EVERY_FILE: &str = "";

struct Target {
    id: u64,
    watched: Weak<dyn Watched>,
}

struct Registry {
    watcher: Mutex<notify::RecommendedWatcher>,
    targets: Arc<Mutex<Targets>>,
}

/// The files watched, by directory, then by name: an event finds its handles, and a handle
/// its entry, without a scan of the directory's other handles.
#[derive(Default)]
struct Targets {
    by_directory: HashMap<PathBuf, HashMap<OsString, Vec<Target>>>,
    next_id: u64,
}

/// The process's registry, created on first use; `None` until a watcher could be created.
static REGISTRY: Mutex<Option<Arc<Registry>>> = Mutex::new(None);

fn registry() -> notify::Result<Arc<Registry>> {
    let mut registry = lock(&REGISTRY);
    if let Some(registry) = registry.as_ref() {
        return Ok(Arc::clone(registry));
    }
    let targets = Arc::new(Mutex::new(Targets::default()));
    let table = Arc::clone(&targets);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        dispatch(&table, event);
    })?;
    let created = Arc::new(Registry {
        watcher: Mutex::new(watcher),
        targets,
    });
    *registry = Some(Arc::clone(&created));
    Ok(created)
}

/// Passes one event to the handles it concerns.
fn dispatch(targets: &Mutex<Targets>, event: notify::Result<notify::Event>) {
    let everything = match &event {
        // Lost events (a queue overflow): any file may have changed.
        Err(_) => true,
        Ok(event) if event.need_rescan() => true,
        // Reads (the handles' own loads among them) change nothing.
        Ok(notify::Event {
            kind: EventKind::Access(access),
            ..
        }) if !matches!(access, AccessKind::Close(AccessMode::Write)) => return,
        Ok(_) => false,
    };
    let mut concerned: Vec<(Arc<dyn Watched>, Option<OsString>)> = Vec::new();
    {
        let targets = lock(targets);
        if everything {
            concerned.extend(
                targets
                    .by_directory
                    .values()
                    .flat_map(HashMap::values)
                    .flatten()
                    .filter_map(|target| Some((target.watched.upgrade()?, None))),
            );
        } else if let Ok(event) = &event {
            for path in &event.paths {
                let (Some(directory), Some(name)) = (path.parent(), path.file_name()) else {
                    continue;
                };
                let Some(names) = targets.by_directory.get(directory) else {
                    continue;
                };
                let lists = [names.get(name), names.get(OsStr::new(EVERY_FILE))];
                concerned.extend(
                    lists.into_iter().flatten().flatten().filter_map(|target| {
                        Some((target.watched.upgrade()?, Some(name.to_owned())))
                    }),
                );
            }
        }
    }
    // Outside the table's lock: a handle dropped here unregisters itself.
    for (watched, name) in concerned {
        watched.changed(name.as_deref());
    }
}

/// Keeps the file registered; dropping it stops the events (and the directory's watch, if
/// it was the last file watched there).
pub(crate) struct Registration {
    registry: Arc<Registry>,
    directory: PathBuf,
    name: OsString,
    id: u64,
}

/// Starts passing the events of the file `name` in `directory` (canonical) to `watched`; of
/// every file of `directory` for the name [`EVERY_FILE`].
pub(crate) fn register(
    directory: &Path,
    name: OsString,
    watched: Weak<dyn Watched>,
) -> notify::Result<Registration> {
    register_with(directory, name, watched, false)
}

/// [`register`], asking the system for the directory's watch again even when other
/// registrations hold it (`renew`): a directory removed and made again under the same path
/// lost its watch with the old directory, while its registrations stayed.
pub(crate) fn register_with(
    directory: &Path,
    name: OsString,
    watched: Weak<dyn Watched>,
    renew: bool,
) -> notify::Result<Registration> {
    let registry = registry()?;
    let mut watcher = lock(&registry.watcher);
    let (id, first) = {
        let mut targets = lock(&registry.targets);
        let id = targets.next_id;
        targets.next_id += 1;
        let names = targets
            .by_directory
            .entry(directory.to_owned())
            .or_default();
        let first = names.is_empty();
        names
            .entry(name.clone())
            .or_default()
            .push(Target { id, watched });
        (id, first)
    };
    let registration = Registration {
        registry: Arc::clone(&registry),
        directory: directory.to_owned(),
        name,
        id,
    };
    let watched = if first || renew {
        watcher.watch(directory, RecursiveMode::NonRecursive)
    } else {
        Ok(())
    };
    // Released before a failure drops the registration, whose drop takes it again.
    drop(watcher);
    watched.map(|()| registration)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut watcher = lock(&self.registry.watcher);
        let last = {
            let mut targets = lock(&self.registry.targets);
            let Some(names) = targets.by_directory.get_mut(&self.directory) else {
                return;
            };
            if let Some(list) = names.get_mut(&self.name) {
                list.retain(|target| target.id != self.id);
                if list.is_empty() {
                    names.remove(&self.name);
                }
            }
            let last = names.is_empty();
            if last {
                targets.by_directory.remove(&self.directory);
            }
            last
        };
        if last {
            // Fails only if the directory is gone, which ended the watch already.
            let _ = watcher.unwatch(&self.directory);
        }
    }
}
