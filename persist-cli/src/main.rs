//! `persist`: look into, check, and restore persist state files without the program that
//! wrote them.
//!
//! ```text
//! persist show FILE [--key-env VAR | --passphrase-env VAR]
//! persist verify PATH... [--all] [--repair] [--key-env VAR | --passphrase-env VAR]
//! persist backups FILE
//! persist restore FILE VERSION
//! persist journal FILE [--follow] [--key-env VAR | --passphrase-env VAR]
//! ```
//!
//! Commands that need the program's types (a dry run of a load, a migration in place) are in
//! the library, for the program to offer as its own subcommands: `persist::cli::run` (feature
//! `cli`).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use persist::{
    Error, FileInfo, FileRole, Format, Key, KeySource, Layout, LoadOutcome, Options, Recovered,
};

const USAGE: &str = "\
usage:
  persist show FILE [--key-env VAR | --passphrase-env VAR]
      the file's layout, layers, schema version and checksum, then its data as indented JSON
  persist verify PATH... [--all] [--repair] [--key-env VAR | --passphrase-env VAR]
      checks each file (directories: every file below them): a state file's framing, checksum
      and JSON, the checksum of every record of a journal or audit log; one line per damaged
      file, per file not checked for want of its key, and per torn journal tail (the last
      flush of a crash, which the next open cuts off: not damage). persist's lock files,
      temporary files and transaction staging are skipped; --all lists them.
      --repair: a damaged state file is replaced by the newest of its generations or
      backups that reads, and kept as FILE.corrupt-<unix ms>; one line per file repaired
      (or not). Without --repair nothing is written.
      Exit 1 when a file is damaged (or cannot be read) and not repaired, 0 otherwise
  persist backups FILE
      the backups persist kept beside FILE, newest version first, its generations (the
      earlier good versions kept by saves), newest first, and the damaged files saves and
      repairs kept aside
  persist restore FILE VERSION
      puts the backup of VERSION back in place of FILE (FILE is kept as a backup first)
  persist journal FILE [--follow] [--key-env VAR | --passphrase-env VAR]
      the records of a journal or audit log, one per line: index, byte offset, schema
      version, data; then how many, and the torn tail the next open would cut off, if any.
      --follow: after them, every record appended later, as it comes (across checkpoints),
      until interrupted

An encrypted file or journal needs its key: --key-env names an environment variable holding
the key as 64 hex digits, --passphrase-env one holding the passphrase.";

/// What to do about a file or record encrypted when no key was given.
const KEY_HINT: &str = "pass --key-env or --passphrase-env";

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
    let Arguments {
        options,
        operands,
        all,
        follow,
        repair,
    } = parse_arguments(rest)?;
    if all && command.to_str() != Some("verify") {
        return Err(Failure::Usage("--all is an option of verify".to_owned()));
    }
    if repair && command.to_str() != Some("verify") {
        return Err(Failure::Usage("--repair is an option of verify".to_owned()));
    }
    if follow && command.to_str() != Some("journal") {
        return Err(Failure::Usage(
            "--follow is an option of journal".to_owned(),
        ));
    }
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
            verify(&options, &operands, (all, repair), out)
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
            match follow {
                true => follow_journal(&options, file, out)?,
                false => journal(&options, file, out)?,
            }
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

/// A command's arguments after the command.
struct Arguments {
    /// The options to read with (the key of `--key-env` / `--passphrase-env`).
    options: Options,
    /// The files and directories.
    operands: Vec<PathBuf>,
    /// `--all`: verify lists the files it skips.
    all: bool,
    /// `--follow`: journal goes on with the records appended later.
    follow: bool,
    /// `--repair`: verify repairs the damaged state files it finds.
    repair: bool,
}

/// Takes `--key-env VAR` / `--passphrase-env VAR` and `--all` out of `args`: the options to
/// read with, the flag, and the remaining operands.
fn parse_arguments(args: &[OsString]) -> Result<Arguments, Failure> {
    let mut options = Options::new();
    let mut operands = Vec::new();
    let mut all = false;
    let mut follow = false;
    let mut repair = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--all") => all = true,
            Some("--follow") => follow = true,
            Some("--repair") => repair = true,
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
    Ok(Arguments {
        options,
        operands,
        all,
        follow,
        repair,
    })
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
    if info.format == Format::Toml {
        // TOML as it is written, comments included.
        write!(out, "{}", info.data)?;
        if !info.data.ends_with('\n') {
            writeln!(out)?;
        }
        return Ok(());
    }
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
        Layout::Toml => "TOML document".to_owned(),
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

/// What `verify` found, for its summary line.
#[derive(Debug, Default)]
struct Tally {
    /// Files checked and found intact (a journal with a torn tail among them).
    intact: u64,
    /// Files damaged, or that could not be read.
    damaged: u64,
    /// Files (or journals with records) encrypted, and no key given.
    not_checked: u64,
    /// Files not checked for holding no data (persist's lock, temporary and staged files) or
    /// for not being regular files (links, FIFOs below a directory).
    skipped: u64,
    /// How many of them were not listed (without `--all`).
    unlisted: u64,
    /// Journals (audit logs are journals too) read to their end, damaged ones not counted.
    journals: u64,
    /// Their records.
    records: u64,
    /// Damaged files repaired (`--repair`).
    repaired: u64,
}

fn verify(
    options: &Options,
    paths: &[PathBuf],
    (all, repair): (bool, bool),
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    let mut entries = Vec::new();
    for path in paths {
        collect(path, true, &mut entries)?;
    }
    let mut tally = Tally::default();
    for entry in &entries {
        match entry {
            Entry::Check(file) => {
                let damaged = tally.damaged;
                check(options, file, &mut tally, out)?;
                let state = persist::file_role(file) == FileRole::State && !is_journal(file);
                if repair && tally.damaged > damaged && state {
                    repair_file(options, file, &mut tally, out)?;
                }
            }
            Entry::Skip { path, why, named } => {
                tally.skipped += 1;
                if all || *named {
                    writeln!(out, "skipped: {} ({why})", path.display())?;
                } else {
                    tally.unlisted += 1;
                }
            }
        }
    }
    let files = tally.intact + tally.damaged + tally.not_checked;
    let mut summary = if tally.damaged == 0 {
        format!("{} intact", count(tally.intact, "file", "files"))
    } else {
        format!(
            "{} of {} damaged",
            tally.damaged,
            count(files, "file", "files")
        )
    };
    if tally.repaired > 0 {
        summary += &format!(", {} repaired", tally.repaired);
    }
    if tally.not_checked > 0 {
        summary += &format!(", {} not checked (encrypted)", tally.not_checked);
    }
    if tally.journals > 0 {
        summary += &format!(
            "; {} in {}",
            count(tally.records, "record", "records"),
            count(tally.journals, "journal", "journals")
        );
    }
    if tally.skipped > 0 {
        summary += &format!("; {} skipped", tally.skipped);
        if tally.unlisted > 0 {
            summary += " (--all lists them)";
        }
    }
    writeln!(out, "{summary}")?;
    Ok(if tally.damaged == tally.repaired {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Repairs the damaged state file `file` (`--repair`): the newest of its generations or
/// backups that reads takes its place, and it is kept aside. Prints what was done.
fn repair_file(
    options: &Options,
    file: &Path,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<(), Failure> {
    match options.repair(file) {
        Ok(LoadOutcome::LastGood(fallback)) => {
            tally.repaired += 1;
            let from = fallback.from.as_deref().unwrap_or(file);
            writeln!(
                out,
                "{}: repaired: the damaged file was moved to {} and {} put in its place",
                file.display(),
                fallback.damaged.display(),
                from.display()
            )?;
        }
        // Repaired by someone else since it was checked.
        Ok(_) => {
            tally.repaired += 1;
            writeln!(out, "{}: intact when looked at again", file.display())?;
        }
        Err(error) => writeln!(
            out,
            "{}: not repaired: no generation or backup of it reads ({error})",
            file.display()
        )?,
    }
    Ok(())
}

/// Checks one file, counts it in `tally`, and prints a line if it is damaged, not checked or
/// a journal with a torn tail.
fn check(
    options: &Options,
    file: &Path,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if is_journal(file) {
        return check_journal(options, file, tally, out);
    }
    match options.file_info(file) {
        Ok(_) => tally.intact += 1,
        // Gone since the listing (a repair put this generation back in its file's place, or
        // another program removed it): nothing to check.
        Err(Error::NotFound { .. }) => {}
        Err(Error::KeyRequired { .. }) => {
            tally.not_checked += 1;
            writeln!(
                out,
                "{}: not checked: encrypted; {KEY_HINT}",
                file.display()
            )?;
        }
        Err(error) => {
            tally.damaged += 1;
            writeln!(out, "{error}")?;
        }
    }
    Ok(())
}

/// Checks every record of the journal `file` (their checksums, and their envelopes when they
/// can be opened): damage is an error, a torn tail is what the next open cuts off.
fn check_journal(
    options: &Options,
    file: &Path,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut records = match options.journal_records(file) {
        Ok(records) => records,
        Err(error) => {
            tally.damaged += 1;
            writeln!(out, "{error}")?;
            return Ok(());
        }
    };
    let (mut read, mut encrypted) = (0, 0);
    for record in &mut records {
        match record {
            Ok(_) => read += 1,
            Err(Error::KeyRequired { .. }) => encrypted += 1,
            Err(error) => {
                tally.damaged += 1;
                writeln!(out, "{error}")?;
                return Ok(());
            }
        }
    }
    tally.journals += 1;
    tally.records += read + encrypted;
    if let Some(torn) = records.recovered() {
        writeln!(out, "{}: {}", file.display(), describe_torn(torn))?;
    }
    if encrypted > 0 {
        tally.not_checked += 1;
        writeln!(
            out,
            "{}: {} of {} not checked: encrypted; {KEY_HINT} (their checksums hold)",
            file.display(),
            encrypted,
            count(read + encrypted, "record", "records"),
        )?;
    } else {
        tally.intact += 1;
    }
    Ok(())
}

/// Whether `file` is a regular file that starts as a persist journal (or audit log) does.
fn is_journal(file: &Path) -> bool {
    /// The first bytes of a journal (FORMAT.md, "Journals").
    const MAGIC: [u8; 8] = [0x89, b'p', b'j', b'l', 0x0D, 0x0A, 0x1A, 0x0A];
    // Not opened unless regular: opening a FIFO would wait for a writer.
    if !std::fs::metadata(file).is_ok_and(|metadata| metadata.is_file()) {
        return false;
    }
    let mut head = [0; MAGIC.len()];
    std::fs::File::open(file)
        .and_then(|mut opened| opened.read_exact(&mut head))
        .is_ok()
        && head == MAGIC
}

/// What the next open of a journal would cut off.
fn describe_torn(torn: Recovered) -> String {
    format!(
        "a torn tail at byte {} ({}, {} with a whole header), left by a crash during an \
         append: never acknowledged nor replayed, and cut off when the journal is next opened \
         for writing",
        torn.offset,
        count(torn.bytes, "byte", "bytes"),
        count(torn.records, "record", "records")
    )
}

/// `n` and the noun that goes with it.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A path `verify` found: a file to check, or one it skips and why.
enum Entry {
    Check(PathBuf),
    Skip {
        path: PathBuf,
        why: &'static str,
        /// Given on the command line: listed even without `--all`.
        named: bool,
    },
}

/// The files to verify at `path`: itself, or for a directory every file below it, in name
/// order. persist's own files that hold no data are skipped (lock files, the temporary files
/// of saves in progress, a transaction's staging: the register of names, `persist::file_role`),
/// as are links and other files that are not regular below a directory. A path given on the
/// command line is checked whatever it is (so that verify reports a missing one), unless it
/// is one of persist's own regular files.
fn collect(path: &Path, named: bool, entries: &mut Vec<Entry>) -> Result<(), Failure> {
    let metadata = std::fs::symlink_metadata(path);
    let skip = |why| Entry::Skip {
        path: path.to_owned(),
        why,
        named,
    };
    match metadata {
        Ok(metadata) if metadata.is_dir() => {
            if !named && let Some(why) = own_file(path) {
                entries.push(skip(why));
                return Ok(());
            }
            let mut paths = std::fs::read_dir(path)
                .map_err(|error| Failure::Error(format!("{}: {error}", path.display())))?
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| Failure::Error(format!("{}: {error}", path.display())))?;
            paths.sort();
            for entry in paths {
                collect(&entry, false, entries)?;
            }
        }
        _ if named => match own_file(path) {
            Some(why) if std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file()) => {
                entries.push(skip(why));
            }
            _ => entries.push(Entry::Check(path.to_owned())),
        },
        Ok(metadata) if metadata.is_file() => match own_file(path) {
            Some(why) => entries.push(skip(why)),
            None => entries.push(Entry::Check(path.to_owned())),
        },
        Ok(metadata) if metadata.is_symlink() => entries.push(skip("a link, not followed")),
        Ok(_) => entries.push(skip("not a regular file")),
        // Gone since its directory was read.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        // Not even looked at (a path too long, no permission): checked, so that the check
        // reports why rather than the file passing unseen.
        Err(_) => entries.push(Entry::Check(path.to_owned())),
    }
    Ok(())
}

/// Why `verify` skips the file at `path`, if it is one of persist's own that holds no data.
fn own_file(path: &Path) -> Option<&'static str> {
    let role = persist::file_role(path);
    if role.holds_data() {
        return None;
    }
    Some(match role {
        FileRole::Lock => "lock file",
        FileRole::Temporary => "temporary file of a save",
        FileRole::Transaction => "transaction staging",
        FileRole::Corrupt { .. } => "damaged file kept aside by a save",
        _ => "persist's own file, no data",
    })
}

fn journal(options: &Options, file: &Path, out: &mut impl Write) -> Result<(), Failure> {
    let mut records = options.journal_records(file)?;
    let (mut total, mut encrypted, mut run) = (0, 0, 0);
    for record in &mut records {
        match record {
            Ok(record) => {
                encrypted_run(&mut run, out)?;
                writeln!(
                    out,
                    "#{} @{} v{} {}",
                    record.index, record.offset, record.version, record.data
                )?;
            }
            Err(Error::KeyRequired { .. }) => {
                encrypted += 1;
                run += 1;
            }
            Err(error) => return Err(error.into()),
        }
        total += 1;
    }
    encrypted_run(&mut run, out)?;
    if encrypted == 0 {
        writeln!(out, "{}", count(total, "record", "records"))?;
    } else {
        writeln!(
            out,
            "{} ({encrypted} not read: encrypted)",
            count(total, "record", "records")
        )?;
    }
    if let Some(torn) = records.recovered() {
        writeln!(out, "{}", describe_torn(torn))?;
    }
    Ok(())
}

/// `persist journal --follow`: every record from the log's first on, then each record appended
/// later as it comes, until the process is interrupted (or the journal is damaged).
fn follow_journal(options: &Options, file: &Path, out: &mut impl Write) -> Result<(), Failure> {
    let records = options.journal_follow_records(file, 0)?;
    for record in records {
        match record {
            Ok((_, record)) => writeln!(
                out,
                "#{} @{} v{} {}",
                record.index, record.offset, record.version, record.data
            )?,
            // Records before the log's first are in the last checkpoint's snapshot: the
            // follower starts after them.
            Err(Error::Checkpointed { from: 0, .. }) => {}
            Err(error @ Error::Checkpointed { .. }) => writeln!(out, "{error}")?,
            Err(Error::KeyRequired { .. }) => {
                writeln!(
                    out,
                    "an encrypted record: not read, no key was given; {KEY_HINT}"
                )?;
            }
            Err(error) => return Err(error.into()),
        }
        out.flush()?;
    }
    Ok(())
}

/// Prints the line for `run` encrypted records read without a key, if there were any, and
/// starts a new run.
fn encrypted_run(run: &mut u64, out: &mut impl Write) -> Result<(), Failure> {
    if *run > 0 {
        writeln!(
            out,
            "{}: not read, no key was given; {KEY_HINT}",
            count(*run, "encrypted record", "encrypted records")
        )?;
    }
    *run = 0;
    Ok(())
}

fn backups(options: &Options, file: &Path, out: &mut impl Write) -> Result<(), Failure> {
    let backups = options.backups_of(file)?;
    let damaged = damaged_copies(file);
    if backups.is_empty() && damaged.is_empty() {
        writeln!(out, "no backups of {}", file.display())?;
    }
    for backup in backups {
        let size = match std::fs::metadata(&backup.path) {
            Ok(metadata) => format!("{} bytes", metadata.len()),
            Err(error) => error.to_string(),
        };
        match backup.generation {
            None => writeln!(
                out,
                "version {:<4} {}  ({size})",
                backup.version,
                backup.path.display()
            )?,
            Some(number) => writeln!(
                out,
                "generation {number} of version {} {}  ({size}: an earlier good version)",
                backup.version,
                backup.path.display()
            )?,
        }
    }
    for (path, size) in damaged {
        writeln!(
            out,
            "damaged      {}  ({size} bytes: a damaged file kept aside as it was, by a save, a recovery or a repair)",
            path.display()
        )?;
    }
    Ok(())
}

/// The damaged files saves kept aside beside `file` (`<name>.corrupt-<unix ms>`), oldest
/// first, with their sizes.
fn damaged_copies(file: &Path) -> Vec<(PathBuf, u64)> {
    let (Some(name), dir) = (file.file_name(), file.parent()) else {
        return Vec::new();
    };
    let dir = match dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut prefix = name.to_owned();
    prefix.push(".corrupt-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .zip(prefix.to_str())
                .is_some_and(|(entry, prefix)| entry.starts_with(prefix))
        })
        .filter_map(|entry| {
            let path = entry.path();
            let FileRole::Corrupt { millis } = persist::file_role(&path) else {
                return None;
            };
            let size = entry.metadata().ok()?.len();
            Some((millis, path, size))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, path, size)| (path, size))
        .collect()
}
