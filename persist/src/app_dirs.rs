//! [`AppDirs`]: where an application's state files live on this platform.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::shell::Durability;
use crate::shell::commit::create_dirs;

/// The directories of one application: config, data, state and cache, as the platform defines
/// them (the XDG base directories on Linux, Known Folders on Windows, the Standard Directories on
/// macOS), each overridable by an environment variable.
///
/// | directory | Linux | override |
/// |---|---|---|
/// | [`config`](AppDirs::config) | `$XDG_CONFIG_HOME/<app>` or `~/.config/<app>` | `<APP>_CONFIG_DIR` |
/// | [`data`](AppDirs::data) | `$XDG_DATA_HOME/<app>` or `~/.local/share/<app>` | `<APP>_DATA_DIR` |
/// | [`state`](AppDirs::state) | `$XDG_STATE_HOME/<app>` or `~/.local/state/<app>` | `<APP>_STATE_DIR` |
/// | [`cache`](AppDirs::cache) | `$XDG_CACHE_HOME/<app>` or `~/.cache/<app>` | `<APP>_CACHE_DIR` |
///
/// `<APP>` is the application name in upper case with every other character than a letter or a
/// digit replaced by `_` (`Editor` → `EDITOR_CONFIG_DIR`, `my-app` → `MY_APP_CONFIG_DIR`). On
/// platforms without a separate state directory, state goes to the local data directory.
/// Nothing is created until [`create`](AppDirs::create) is called.
///
/// # Examples
///
/// ```no_run
/// use persist::{AppDirs, Persisted};
/// # #[derive(Default, serde::Serialize, serde::Deserialize, Persisted)]
/// # #[persist(version = 1)]
/// # struct Settings { theme: String }
/// let dirs = AppDirs::new("com", "Example", "Editor")?;
/// dirs.create()?;
/// let settings = Settings::load_or_default(dirs.config().join("settings.json"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDirs {
    config: PathBuf,
    data: PathBuf,
    state: PathBuf,
    cache: PathBuf,
}

/// Why [`AppDirs::new`] found no directories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppDirsError {
    /// No home directory is known (`$HOME` unset and no password-database entry), and no
    /// override names the directory.
    #[error(
        "no home directory for {application}'s {which} directory: set HOME, or {variable} to \
         the directory to use"
    )]
    NoHome {
        /// The application name given.
        application: String,
        /// `config`, `data`, `state` or `cache`.
        which: &'static str,
        /// The environment variable that would override it.
        variable: String,
    },
}

impl AppDirs {
    /// The directories of the application `application` of `organization`, whose reverse
    /// domain name starts with `qualifier` (`"com"`, `"org"`; used on macOS), with the
    /// environment overrides applied.
    ///
    /// # Errors
    ///
    /// [`AppDirsError::NoHome`] when the platform has no home directory for one of them and no
    /// override is set.
    pub fn new(
        qualifier: &str,
        organization: &str,
        application: &str,
    ) -> Result<AppDirs, AppDirsError> {
        let project = directories::ProjectDirs::from(qualifier, organization, application);
        let prefix = env_prefix(application);
        let pick = |which: &'static str, platform: Option<&Path>| {
            let variable = format!("{prefix}_{}_DIR", which.to_ascii_uppercase());
            match std::env::var_os(&variable).filter(|value| !value.is_empty()) {
                Some(dir) => Ok(PathBuf::from(dir)),
                None => platform.map(Path::to_owned).ok_or(AppDirsError::NoHome {
                    application: application.to_owned(),
                    which,
                    variable,
                }),
            }
        };
        let project = project.as_ref();
        Ok(AppDirs {
            config: pick("config", project.map(|p| p.config_dir()))?,
            data: pick("data", project.map(|p| p.data_dir()))?,
            state: pick(
                "state",
                project.map(|p| p.state_dir().unwrap_or_else(|| p.data_local_dir())),
            )?,
            cache: pick("cache", project.map(|p| p.cache_dir()))?,
        })
    }

    /// Settings people may edit or sync between machines.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Data the application keeps and the user would miss (documents, history).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// State that should persist across restarts but is not worth syncing (window positions,
    /// recent files, logs).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// What can be rebuilt at any time.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// Creates the four directories (and their missing parents), each new one with mode 0700
    /// (private to the user). Directories that exist are left as they are.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`IoOp::CreateDir`](crate::IoOp::CreateDir) naming the directory that could not be created.
    pub fn create(&self) -> Result<(), Error> {
        for dir in [&self.config, &self.data, &self.state, &self.cache] {
            create_dirs(dir, dir, Durability::Full)?;
        }
        Ok(())
    }
}

/// `my-app` → `MY_APP`.
fn env_prefix(application: &str) -> String {
    application
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
