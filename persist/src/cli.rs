//! Subcommands for an application's own command line (feature `cli`): the commands that need
//! the application's types, which the `persist` command (crate `persist-cli`) cannot offer.
//!
//! ```text
//! inspect FILE            what a load would do: the stored version, the migration steps, and
//!                         whether it would succeed (nothing is written)
//! migrate FILE            loads FILE through the migration chain and saves it at the current
//!                         version; the old file is kept as a backup of its version
//! migrate FILE --dry-run  what migrate would do, without writing
//! migrate FILE --to N     rewrites FILE at version N of the chain: an older version, for a
//!                         release about to be rolled back, is reached through each version's
//!                         `#[persist(downgrade)]` step (the current one is `migrate FILE`;
//!                         a newer one is an error); with --dry-run, what it would do; the old
//!                         file is kept as a backup of its version
//! ```
//!
//! Exit status: 0 on success, 1 when the file cannot be inspected or migrated (one line on
//! standard error says why), 2 for a command line it does not understand.
//!
//! # Examples
//!
//! An application forwards its `state` subcommand:
//!
//! ```no_run
//! # #[derive(Default, serde::Serialize, serde::Deserialize, persist::Persisted)]
//! # #[persist(version = 1)]
//! # struct Settings { theme: String }
//! fn main() -> std::process::ExitCode {
//!     let mut args = std::env::args_os().skip(1);
//!     match args.next() {
//!         Some(command) if command == "state" => persist::cli::run::<Settings>(args),
//!         _ => std::process::ExitCode::SUCCESS, // the application's own work
//!     }
//! }
//! ```

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Options, Persisted};

const USAGE: &str = "\
usage:
  inspect FILE            what a load would do: the stored version, the migration steps, and
                          whether it would succeed (nothing is written)
  migrate FILE            rewrites FILE at the current version; the old file is kept as a
                          backup of its version
  migrate FILE --dry-run  what migrate would do, without writing
  migrate FILE --to N     rewrites FILE at version N of the chain: an older version through
                          each version's downgrade step (a rollback); add --dry-run to only
                          say what it would do";

/// Runs the subcommand in `args` (without the program's name) for state files of type `T`,
/// with the default [`Options`], printing to standard output and standard error.
///
/// # Examples
///
/// See the [module documentation](self).
pub fn run<T: Persisted>(args: impl IntoIterator<Item = impl Into<OsString>>) -> ExitCode {
    run_with::<T>(&Options::new(), args, &mut io::stdout(), &mut io::stderr())
}

/// [`run`] with the application's [`Options`] (its size cap, key, durability) and where to
/// print: what `run` prints to standard output goes to `out`, the one line saying why a command
/// failed to `err`.
///
/// # Examples
///
/// ```no_run
/// # #[derive(Default, serde::Serialize, serde::Deserialize, persist::Persisted)]
/// # #[persist(version = 1)]
/// # struct Settings { theme: String }
/// let options = persist::Options::new().max_size(1 << 20);
/// let code = persist::cli::run_with::<Settings>(
///     &options,
///     ["inspect", "settings.json"],
///     &mut std::io::stdout(),
///     &mut std::io::stderr(),
/// );
/// ```
pub fn run_with<T: Persisted>(
    options: &Options,
    args: impl IntoIterator<Item = impl Into<OsString>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let result = match parse(&args) {
        Ok(Command::Inspect(file)) => inspect::<T>(options, &file, out),
        Ok(Command::Migrate { file, dry_run, to }) => match to {
            Some(version) if version != T::VERSION => {
                downgrade::<T>(options, &file, version, dry_run, out)
            }
            _ => migrate::<T>(options, &file, dry_run, out),
        },
        Ok(Command::Help) => writeln!(out, "{USAGE}").map_err(Failure::from),
        Err(failure) => Err(failure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            let _ = writeln!(err, "{message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Error(message)) => {
            let _ = out.flush();
            let _ = writeln!(err, "{message}");
            ExitCode::FAILURE
        }
    }
}

enum Command {
    Inspect(PathBuf),
    Migrate {
        file: PathBuf,
        dry_run: bool,
        /// `--to N`: the version to write.
        to: Option<u32>,
    },
    Help,
}

/// A command line not understood (exit 2), or one line saying what went wrong (exit 1).
enum Failure {
    Usage(String),
    Error(String),
}

impl From<crate::Error> for Failure {
    fn from(error: crate::Error) -> Failure {
        Failure::Error(error.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Error(format!("could not write the output: {error}"))
    }
}

fn parse(args: &[OsString]) -> Result<Command, Failure> {
    let words: Vec<&str> = args
        .iter()
        .map(|arg| {
            arg.to_str()
                .ok_or_else(|| Failure::Usage(format!("{} is not UTF-8", arg.to_string_lossy())))
        })
        .collect::<Result<_, _>>()?;
    match words.as_slice() {
        ["inspect", file] => Ok(Command::Inspect(PathBuf::from(file))),
        ["migrate", rest @ ..] if !rest.is_empty() => parse_migrate(rest),
        ["help" | "--help" | "-h"] => Ok(Command::Help),
        [] => Err(Failure::Usage("no command given".to_owned())),
        _ => Err(Failure::Usage(format!(
            "unknown command or arguments: {}",
            words.join(" ")
        ))),
    }
}

/// The words after `migrate`: one file, `--dry-run` and `--to N` in any order.
fn parse_migrate(words: &[&str]) -> Result<Command, Failure> {
    let mut file = None;
    let mut dry_run = false;
    let mut to = None;
    let mut words = words.iter();
    while let Some(&word) = words.next() {
        match word {
            "--dry-run" if !dry_run => dry_run = true,
            "--to" if to.is_none() => {
                let version = words.next().ok_or_else(|| {
                    Failure::Usage("--to needs a version, as in `--to 2`".to_owned())
                })?;
                to = Some(
                    version
                        .parse::<u32>()
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "--to {version}: a version is a whole number from 1 up"
                            ))
                        })?,
                );
            }
            word if !word.starts_with("--") && file.is_none() => file = Some(PathBuf::from(word)),
            word => {
                return Err(Failure::Usage(format!("migrate: unexpected `{word}`")));
            }
        }
    }
    match file {
        Some(file) => Ok(Command::Migrate { file, dry_run, to }),
        None => Err(Failure::Usage("migrate: no FILE given".to_owned())),
    }
}

fn inspect<T: Persisted>(
    options: &Options,
    file: &std::path::Path,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let report = options.inspect::<T>(file)?;
    writeln!(out, "{report}")?;
    match report.outcome {
        Ok(()) => Ok(()),
        Err(_) => Err(Failure::Error(format!(
            "{}: would not load (see above)",
            file.display()
        ))),
    }
}

/// What a load of `file` would do, if it would succeed; its error otherwise.
fn loadable<T: Persisted>(
    options: &Options,
    file: &std::path::Path,
) -> Result<crate::Inspection, Failure> {
    let report = options.inspect::<T>(file)?;
    match report.outcome {
        Ok(()) => Ok(report),
        Err(error) => Err(error.into()),
    }
}

fn migrate<T: Persisted>(
    options: &Options,
    file: &std::path::Path,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let report = loadable::<T>(options, file)?;
    // A file without an envelope is read as the oldest version; rewriting it adds the envelope
    // even when that is the current version.
    let from = if report.unversioned {
        report
            .steps
            .first()
            .map_or(u64::from(T::VERSION), |&(from, _)| u64::from(from))
    } else {
        report.stored_version.unwrap_or_default()
    };
    if !report.unversioned && from == u64::from(T::VERSION) {
        writeln!(
            out,
            "{}: already at version {}; nothing to do",
            file.display(),
            T::VERSION
        )?;
        return Ok(());
    }
    let mut change: Vec<String> = report
        .steps
        .iter()
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    if report.unversioned {
        change.push("adds the envelope".to_owned());
    }
    let change = change.join(", ");
    if dry_run {
        writeln!(
            out,
            "{}: would migrate from version {from} to version {} ({change}) and keep the old \
             file as the backup of version {from}; nothing was written",
            file.display(),
            T::VERSION
        )?;
        return Ok(());
    }
    let value: T = options.load(file)?;
    options.save(&value, file)?;
    writeln!(
        out,
        "{}: migrated from version {from} to version {} ({change}); the old file is kept as \
         the backup of version {from}",
        file.display(),
        T::VERSION
    )?;
    Ok(())
}

/// `migrate FILE --to N`: the file loaded at the current version (through the chain), then
/// written at version `to`, down through each downgrade step.
fn downgrade<T: Persisted>(
    options: &Options,
    file: &std::path::Path,
    to: u32,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let report = loadable::<T>(options, file)?;
    let from = report.stored_version.unwrap_or_default();
    if !report.unversioned && from == u64::from(to) {
        writeln!(
            out,
            "{}: already at version {to}; nothing to do",
            file.display()
        )?;
        return Ok(());
    }
    let value: T = options.load(file)?;
    // The whole walk runs before anything is written: a step that fails or is missing is the
    // error, also in a dry run.
    crate::rollback::encode_at(&value, to, crate::codec::Style::default())
        .map_err(|failure| failure.at(file))?
        .map_err(|error| error.at(file))?;
    // The way there: up the chain to the current version (what a load does), then down.
    let chain = |versions: &mut dyn Iterator<Item = u32>| {
        versions
            .map(|version| version.to_string())
            .collect::<Vec<_>>()
            .join(" -> ")
    };
    let down = chain(
        &mut (to..=T::VERSION)
            .rev()
            .filter(|version| crate::codec::in_chain::<T>(*version)),
    );
    let path = match report.steps.first() {
        Some((first, _)) => format!(
            "up {}, then down {down}",
            chain(&mut std::iter::once(*first).chain(report.steps.iter().map(|(_, to)| *to)))
        ),
        None => format!("down {down}"),
    };
    if dry_run {
        writeln!(
            out,
            "{}: would write version {to} ({path}) and keep the old file as the backup of \
             version {from}; nothing was written",
            file.display()
        )?;
        return Ok(());
    }
    options.clone().save_as_version(to).save(&value, file)?;
    writeln!(
        out,
        "{}: written at version {to} ({path}); the old file is kept as the backup of version \
         {from}",
        file.display()
    )?;
    Ok(())
}
