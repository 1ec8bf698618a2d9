//! `persist`: look into, check, and restore persist state files without the program that
//! wrote them.
//!
//! ```text
//! persist show FILE [--key-env VAR | --passphrase-env VAR]
//! persist verify PATH... [--key-env VAR | --passphrase-env VAR]
//! persist backups FILE
//! persist restore FILE VERSION
//! persist journal FILE
//! ```
//!
//! Commands that need the program's types (a dry run of a load, a migration in place) are in
//! the library, for the program to offer as its own subcommands: `persist::cli::run` (feature
//! `cli`).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use persist::{Error, FileInfo, Key, KeySource, Layout, Options};

const USAGE: &str = "\
usage:
  persist show FILE [--key-env VAR | --passphrase-env VAR]
      the file's layout, layers, schema version and checksum, then its data as indented JSON
  persist verify PATH... [--key-env VAR | --passphrase-env VAR]
      checks framing, checksum and JSON of each file (directories: every file below them);
      exit 0 when all are intact, 1 with one line per damaged file
  persist backups FILE
      the backups persist kept beside FILE, newest version first
  persist restore FILE VERSION
      puts the backup of VERSION back in place of FILE (FILE is kept as a backup first)
  persist journal FILE
      the records of a journal, one per line: index, byte offset, schema version, data

An encrypted file needs its key: --key-env names an environment variable holding the key as
64 hex digits, --passphrase-env one holding the passphrase.";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run(&args, &mut out) {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("persist: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Error(message)) => {
            let _ = out.flush();
            eprintln!("persist: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped: a command line it does not understand (exit 2, with the usage), or
/// one line saying what went wrong (exit 1).
enum Failure {
    Usage(String),
    Error(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Error(error.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Error(format!("could not write the output: {error}"))
    }
}

fn run(args: &[OsString], out: &mut impl Write) -> Result<ExitCode, Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".to_owned()));
    };
    let (options, operands) = parse_key(rest)?;
    match command.to_str() {
        Some("show") => {
            let [file] = operands.as_slice() else {
                return Err(Failure::Usage("show takes one FILE".to_owned()));
            };
            show(&options.file_info(file)?, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("verify") => {
            if operands.is_empty() {
                return Err(Failure::Usage("verify takes at least one PATH".to_owned()));
            }
            verify(&options, &operands, out)
        }
        Some("backups") => {
            let [file] = operands.as_slice() else {
                return Err(Failure::Usage("backups takes one FILE".to_owned()));
            };
            backups(&options, file, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("restore") => {
            let [file, version] = operands.as_slice() else {
                return Err(Failure::Usage("restore takes FILE and VERSION".to_owned()));
            };
            let version = version
                .to_str()
                .and_then(|version| version.strip_prefix('v').unwrap_or(version).parse().ok())
                .ok_or_else(|| {
                    Failure::Usage(format!(
                        "VERSION must be a schema version number, not {}",
                        version.display()
                    ))
                })?;
            options.restore_backup(file, version)?;
            writeln!(
                out,
                "restored the backup of version {version} as {}",
                file.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some("journal") => {
            let [file] = operands.as_slice() else {
                return Err(Failure::Usage("journal takes one FILE".to_owned()));
            };
            journal(&options, file, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("help" | "--help" | "-h") => {
            writeln!(out, "{USAGE}")?;
            Ok(ExitCode::SUCCESS)
        }
        Some("--version" | "-V") => {
            writeln!(out, "persist {}", env!("CARGO_PKG_VERSION"))?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Failure::Usage(format!(
            "unknown command {}",
            command.display()
        ))),
    }
}

/// Takes `--key-env VAR` / `--passphrase-env VAR` out of `args`: the options to read with, and
/// the remaining operands.
fn parse_key(args: &[OsString]) -> Result<(Options, Vec<PathBuf>), Failure> {
    let mut options = Options::new();
    let mut operands = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some(flag @ ("--key-env" | "--passphrase-env")) => {
                let variable = args
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("{flag} needs a variable name")))?;
                let variable = variable.to_str().ok_or_else(|| {
                    Failure::Usage(format!("{flag}: the variable name is not UTF-8"))
                })?;
                let key = if flag == "--key-env" {
                    Key::from_env(variable).map_err(|error| Failure::Error(error.to_string()))?
                } else {
                    let passphrase = std::env::var(variable).map_err(|_| {
                        Failure::Error(format!(
                            "the environment variable {variable} is not set (or not UTF-8)"
                        ))
                    })?;
                    Key::from_passphrase(passphrase)
                };
                options = options.encrypt(key);
            }
            Some(flag) if flag.starts_with("--") => {
                return Err(Failure::Usage(format!("unknown option {flag}")));
            }
            _ => operands.push(PathBuf::from(arg)),
        }
    }
    Ok((options, operands))
}

fn show(info: &FileInfo, out: &mut impl Write) -> Result<(), Failure> {
    writeln!(out, "file:     {}", info.path.display())?;
    writeln!(out, "size:     {} bytes", info.size)?;
    writeln!(out, "layout:   {}", describe_layout(&info.layout))?;
    match info.version {
        Some(version) => writeln!(out, "version:  {version}")?,
        None => writeln!(out, "version:  none (no envelope)")?,
    }
    let checksum = if info.checksummed {
        "crc32c of the data, intact"
    } else {
        "none"
    };
    writeln!(out, "checksum: {checksum}")?;
    writeln!(out, "data:")?;
    let mut deserializer = serde_json::Deserializer::from_str(&info.data);
    let mut serializer = serde_json::Serializer::pretty(&mut *out);
    serde_transcode::transcode(&mut deserializer, &mut serializer)
        .map_err(|error| Failure::Error(format!("could not print the data: {error}")))?;
    writeln!(out)?;
    Ok(())
}

fn describe_layout(layout: &Layout) -> String {
    match layout {
        Layout::Envelope { pretty: false } => "JSON envelope, compact".to_owned(),
        Layout::Envelope { pretty: true } => "JSON envelope, indented".to_owned(),
        Layout::Unversioned => "JSON without an envelope (read as the oldest version)".to_owned(),
        Layout::Framed {
            format,
            compressed,
            encrypted,
            payload_len,
            envelope_len,
        } => {
            let mut layers = Vec::new();
            if *compressed {
                layers.push("zstd".to_owned());
            }
            match encrypted {
                Some(KeySource::Raw) => layers.push("encrypted (raw key)".to_owned()),
                Some(KeySource::Passphrase {
                    memory_kib,
                    iterations,
                    lanes,
                }) => layers.push(format!(
                    "encrypted (passphrase: Argon2id, memory {memory_kib} KiB, passes \
                     {iterations}, lanes {lanes})"
                )),
                Some(_) => layers.push("encrypted".to_owned()),
                None => {}
            }
            format!(
                "frame format {format}: {}; payload {payload_len} bytes, envelope \
                 {envelope_len} bytes",
                layers.join(", ")
            )
        }
        _ => format!("{layout:?}"),
    }
}

fn verify(options: &Options, paths: &[PathBuf], out: &mut impl Write) -> Result<ExitCode, Failure> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, true, &mut files)?;
    }
    let mut damaged = 0;
    for file in &files {
        if let Err(error) = options.file_info(file) {
            damaged += 1;
            writeln!(out, "{error}")?;
        }
    }
    if damaged == 0 {
        writeln!(out, "{} files intact", files.len())?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "{damaged} of {} files damaged", files.len())?;
        Ok(ExitCode::FAILURE)
    }
}

/// The files to verify at `path`: itself, or for a directory every file below it that persist
/// may have written (not its lock files, the temporary files of saves in progress or a
/// transaction's staging), in name
/// order. A path given on the command line is taken whatever it is, so that verify reports it.
fn collect(path: &Path, named: bool, files: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let metadata = std::fs::symlink_metadata(path);
    match metadata {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = std::fs::read_dir(path)
                .map_err(|error| Failure::Error(format!("{}: {error}", path.display())))?
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| Failure::Error(format!("{}: {error}", path.display())))?;
            entries.sort();
            for entry in entries {
                collect(&entry, false, files)?;
            }
        }
        _ if named => files.push(path.to_owned()),
        // persist's own bookkeeping is skipped: lock files, the temporary files of saves in
        // progress, a transaction's staging (the register of names: `persist::file_role`).
        Ok(metadata) if metadata.is_file() && persist::file_role(path).holds_data() => {
            files.push(path.to_owned());
        }
        _ => {}
    }
    Ok(())
}

fn journal(options: &Options, file: &Path, out: &mut impl Write) -> Result<(), Failure> {
    let mut records = options.journal_records(file)?;
    let mut count = 0;
    for record in &mut records {
        let record = record?;
        writeln!(
            out,
            "#{} @{} v{} {}",
            record.index, record.offset, record.version, record.data
        )?;
        count += 1;
    }
    writeln!(out, "{count} records")?;
    if let Some(offset) = records.torn_tail() {
        writeln!(
            out,
            "a torn record at byte {offset} (a crash during an append): never replayed, cut off \
             when the journal is next opened for writing"
        )?;
    }
    Ok(())
}

fn backups(options: &Options, file: &Path, out: &mut impl Write) -> Result<(), Failure> {
    let backups = options.backups_of(file)?;
    if backups.is_empty() {
        writeln!(out, "no backups of {}", file.display())?;
    }
    for backup in backups {
        let size = std::fs::metadata(&backup.path).map(|metadata| metadata.len());
        match size {
            Ok(size) => writeln!(
                out,
                "version {:<4} {}  ({size} bytes)",
                backup.version,
                backup.path.display()
            )?,
            Err(error) => writeln!(
                out,
                "version {:<4} {}  ({error})",
                backup.version,
                backup.path.display()
            )?,
        }
    }
    Ok(())
}
