//! Workloads and hand-written baselines for persist's benchmark suite (`cargo bench`).
//!
//! The suite itself is `benches/suite.rs`; this library holds what it measures, so that the
//! peak-memory child processes the suite starts and any other bench share one definition:
//!
//! - [`Settings`]: the small workload, a ~1 KiB settings struct of 21 fields of mixed types;
//! - [`Records`]: the medium (~1.3 MiB, 5,000 records) and large (~100 MiB) workloads, records
//!   with strings, numbers, a nested struct, `Option`, an enum with data and a map;
//! - [`RecordsV1`] → [`RecordsV2`] → [`RecordsV3`] → [`Records`]: the same data three typed
//!   migration steps back, for the cost of loading an old file;
//! - [`shapes`]: real-world shapes of about 1 MiB each: float-heavy geometry, a map-heavy
//!   catalogue, string- and unicode-heavy social data;
//! - [`journal`]: the journal's small record and the fixture of the replay rows;
//! - [`baseline`]: the hand-written durable save and plain load persist is measured against.

use std::collections::BTreeMap;

use persist::Persisted;
use serde::{Deserialize, Serialize};

/// The small workload: application settings, about 1 KiB as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct Settings {
    /// Colour theme.
    pub theme: Theme,
    /// Editor font.
    pub font_family: String,
    /// Font size in points.
    pub font_size: f32,
    /// Line height as a multiple of the font size.
    pub line_height: f64,
    /// Spaces per tab.
    pub tab_width: u8,
    /// Soft wrap long lines.
    pub word_wrap: bool,
    /// Show the minimap.
    pub show_minimap: bool,
    /// Seconds between autosaves.
    pub autosave_secs: u32,
    /// Recently opened files.
    pub recent_files: Vec<String>,
    /// Main window geometry.
    pub window: Window,
    /// UI language.
    pub language: String,
    /// Whether usage statistics are sent.
    pub telemetry: bool,
    /// Unix time of the last update check.
    pub last_update_check: u64,
    /// Signed-in user, if any.
    pub user_name: Option<String>,
    /// Key bindings: action → keys.
    pub shortcuts: BTreeMap<String, String>,
    /// Zoom factor.
    pub zoom: f64,
    /// Cursor shape.
    pub cursor_style: CursorStyle,
    /// Terminal scrollback lines.
    pub scrollback: u32,
    /// HTTP proxy, if any.
    pub proxy: Option<String>,
    /// Identifier of the last session.
    pub session_id: String,
    /// Enabled plugins.
    pub plugins: Vec<String>,
}

/// Colour theme of [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    /// Light.
    #[default]
    Light,
    /// Dark.
    Dark,
    /// A custom accent colour.
    Custom {
        /// `#rrggbb`.
        accent: String,
    },
}

/// Cursor shape of [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorStyle {
    /// A vertical bar.
    #[default]
    Line,
    /// A filled block.
    Block,
    /// An underline.
    Underline,
}

/// Window geometry of [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the window is maximized.
    pub maximized: bool,
}

impl Settings {
    /// The small workload's value.
    pub fn sample() -> Settings {
        let mut shortcuts = BTreeMap::new();
        for (action, keys) in [
            ("command_palette", "ctrl+shift+p"),
            ("find_in_files", "ctrl+shift+f"),
            ("go_to_definition", "f12"),
            ("toggle_terminal", "ctrl+`"),
            ("split_editor", "ctrl+\\"),
        ] {
            shortcuts.insert(action.to_owned(), keys.to_owned());
        }
        Settings {
            theme: Theme::Custom {
                accent: "#3b82f6".into(),
            },
            font_family: "JetBrains Mono, Fira Code, monospace".into(),
            font_size: 13.5,
            line_height: 1.45,
            tab_width: 4,
            word_wrap: true,
            show_minimap: false,
            autosave_secs: 30,
            recent_files: (0..5)
                .map(|i| format!("/home/user/projects/persist/src/module_{i}/implementation.rs"))
                .collect(),
            window: Window {
                x: 120,
                y: -40,
                width: 1728,
                height: 1080,
                maximized: false,
            },
            language: "en-GB".into(),
            telemetry: false,
            last_update_check: 1_795_000_000,
            user_name: Some("Ada Lovelace".into()),
            shortcuts,
            zoom: 1.25,
            cursor_style: CursorStyle::Block,
            scrollback: 10_000,
            proxy: None,
            session_id: "3f2a9c4e-8b1d-4c7a-9e5f-6d0b2a1c8e74".into(),
            plugins: ["git-lens", "rust-analyzer", "vim-mode", "spell-check"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The medium and large workloads: a list of records, in its current (fourth) version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 4, migrate_from = RecordsV3)]
pub struct Records {
    /// The records.
    pub records: Vec<Record>,
}

/// One record of [`Records`], about 260 bytes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Identifier.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// A score.
    pub score: f64,
    /// Labels.
    pub tags: Vec<String>,
    /// Postal address.
    pub address: Address,
    /// Identifier of the parent record, if any.
    pub parent: Option<u64>,
    /// Account status.
    pub status: Status,
    /// Named counters.
    pub counters: BTreeMap<String, u32>,
    /// Unix time of creation.
    pub created_at: i64,
}

/// Postal address of a [`Record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub zip: String,
}

/// Account status of a [`Record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In use.
    Active,
    /// Suspended since a time, for a reason.
    Suspended {
        /// Unix time.
        since: i64,
        /// Why.
        reason: String,
    },
    /// Closed.
    Closed,
}

const TAGS: [&str; 8] = [
    "admin", "beta", "billing", "support", "eu", "us", "trial", "vip",
];
const CITIES: [&str; 6] = [
    "Lisbon",
    "Tallinn",
    "Montréal",
    "Osaka",
    "Nairobi",
    "Valparaíso",
];
const STREETS: [&str; 5] = [
    "Rua Augusta",
    "Narva maantee",
    "Rue Saint-Denis",
    "Dotonbori",
    "Kenyatta Avenue",
];

/// A small deterministic generator (SplitMix64), so every run measures the same bytes.
/// A small deterministic generator (SplitMix64): the same workloads and the same round orders
/// on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles `items` (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

impl Record {
    fn generate(id: u64, rng: &mut Rng) -> Record {
        let tags = (0..rng.below(4))
            .map(|_| TAGS[rng.below(8) as usize].to_owned())
            .collect();
        let status = match rng.below(10) {
            0 => Status::Suspended {
                since: 1_700_000_000 + rng.below(90_000_000) as i64,
                reason: "payment overdue".into(),
            },
            1 => Status::Closed,
            _ => Status::Active,
        };
        let counters = (0..rng.below(4))
            .map(|i| (format!("counter_{i}"), rng.below(100_000) as u32))
            .collect();
        Record {
            id,
            name: format!("User {id:06} {}", TAGS[rng.below(8) as usize]),
            email: format!("user{id}@example{}.org", rng.below(100)),
            score: rng.below(1_000_000) as f64 / 1_000.0,
            tags,
            address: Address {
                street: format!("{} {}", STREETS[rng.below(5) as usize], rng.below(300) + 1),
                city: CITIES[rng.below(6) as usize].to_owned(),
                zip: format!("{:05}", rng.below(100_000)),
            },
            parent: (rng.below(3) == 0).then(|| rng.below(id.max(1))),
            status,
            counters,
            created_at: 1_600_000_000 + rng.below(200_000_000) as i64,
        }
    }
}

impl Records {
    /// `count` records, the same for the same count.
    pub fn generate(count: usize) -> Records {
        let mut rng = Rng(0x5EED);
        Records {
            records: (0..count as u64)
                .map(|id| Record::generate(id, &mut rng))
                .collect(),
        }
    }

    /// The medium workload: 5,000 records, ~1.3 MiB as JSON.
    pub fn medium() -> Records {
        Records::generate(MEDIUM_RECORDS)
    }

    /// The large workload: ~100 MiB as JSON.
    pub fn large() -> Records {
        Records::generate(LARGE_RECORDS)
    }
}

/// Records in the medium workload.
pub const MEDIUM_RECORDS: usize = 5_000;
/// Records in the large workload (~100 MiB of JSON).
pub const LARGE_RECORDS: usize = 390_000;

/// Version 1 of [`Records`]: `parent` was `-1` when absent, the status a string and a separate
/// reason, the creation time was `created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
pub struct RecordsV1 {
    /// The records.
    pub records: Vec<RecordV1>,
}

/// A record of [`RecordsV1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RecordV1 {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub score: f64,
    pub tags: Vec<String>,
    pub address: Address,
    pub parent: i64,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<(i64, String)>,
    pub counters: BTreeMap<String, u32>,
    pub created: i64,
}

/// Version 2: `parent` became an `Option`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = RecordsV1)]
pub struct RecordsV2 {
    /// The records.
    pub records: Vec<RecordV2>,
}

/// A record of [`RecordsV2`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RecordV2 {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub score: f64,
    pub tags: Vec<String>,
    pub address: Address,
    pub parent: Option<u64>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<(i64, String)>,
    pub counters: BTreeMap<String, u32>,
    pub created: i64,
}

/// Version 3: the status became an enum carrying its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 3, migrate_from = RecordsV2)]
pub struct RecordsV3 {
    /// The records.
    pub records: Vec<RecordV3>,
}

/// A record of [`RecordsV3`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RecordV3 {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub score: f64,
    pub tags: Vec<String>,
    pub address: Address,
    pub parent: Option<u64>,
    pub status: Status,
    pub counters: BTreeMap<String, u32>,
    pub created: i64,
}

impl From<RecordsV1> for RecordsV2 {
    fn from(old: RecordsV1) -> Self {
        let records = old.records.into_iter().map(|r| RecordV2 {
            id: r.id,
            name: r.name,
            email: r.email,
            score: r.score,
            tags: r.tags,
            address: r.address,
            parent: u64::try_from(r.parent).ok(),
            status: r.status,
            suspended: r.suspended,
            counters: r.counters,
            created: r.created,
        });
        RecordsV2 {
            records: records.collect(),
        }
    }
}

/// An unknown status string in a version 2 file.
#[derive(Debug, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(String);

impl TryFrom<RecordsV2> for RecordsV3 {
    type Error = UnknownStatus;

    fn try_from(old: RecordsV2) -> Result<Self, UnknownStatus> {
        let records = old.records.into_iter().map(|r| {
            let status = match (r.status.as_str(), r.suspended) {
                ("active", _) => Status::Active,
                ("closed", _) => Status::Closed,
                ("suspended", Some((since, reason))) => Status::Suspended { since, reason },
                _ => return Err(UnknownStatus(r.status)),
            };
            Ok(RecordV3 {
                id: r.id,
                name: r.name,
                email: r.email,
                score: r.score,
                tags: r.tags,
                address: r.address,
                parent: r.parent,
                status,
                counters: r.counters,
                created: r.created,
            })
        });
        Ok(RecordsV3 {
            records: records.collect::<Result<_, _>>()?,
        })
    }
}

impl From<RecordsV3> for Records {
    fn from(old: RecordsV3) -> Self {
        let records = old.records.into_iter().map(|r| Record {
            id: r.id,
            name: r.name,
            email: r.email,
            score: r.score,
            tags: r.tags,
            address: r.address,
            parent: r.parent,
            status: r.status,
            counters: r.counters,
            created_at: r.created,
        });
        Records {
            records: records.collect(),
        }
    }
}

impl RecordsV1 {
    /// `current` as version 1 wrote it: loading the result through the chain gives `current`
    /// back.
    pub fn from_current(current: &Records) -> RecordsV1 {
        let records = current.records.iter().cloned().map(|r| {
            let (status, suspended) = match r.status {
                Status::Active => ("active", None),
                Status::Closed => ("closed", None),
                Status::Suspended { since, reason } => ("suspended", Some((since, reason))),
            };
            RecordV1 {
                id: r.id,
                name: r.name,
                email: r.email,
                score: r.score,
                tags: r.tags,
                address: r.address,
                parent: r.parent.map_or(-1, |p| p as i64),
                status: status.to_owned(),
                suspended,
                counters: r.counters,
                created: r.created_at,
            }
        });
        RecordsV1 {
            records: records.collect(),
        }
    }
}

pub mod journal;
pub mod shapes;

/// The hand-written code persist is measured against: what a careful programmer writes with
/// std and serde_json alone.
pub mod baseline {
    use std::fs::{self, File, OpenOptions};
    use std::io::{self, Write};
    use std::path::Path;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    /// The same envelope persist writes, so both read and write identical bytes.
    #[derive(Serialize, Deserialize)]
    pub struct Envelope<T> {
        /// Schema version.
        pub version: u32,
        /// The value.
        pub data: T,
    }

    /// Durable atomic save: `serde_json::to_vec`, a temporary file in the same directory,
    /// write, fsync, rename over the target, fsync the directory.
    pub fn save<T: Serialize>(version: u32, data: &T, path: &Path) -> io::Result<()> {
        write_durably(&serde_json::to_vec(&Envelope { version, data })?, path)
    }

    /// [`save`] without its two fsyncs (atomic, not durable): what persist's
    /// `Durability::None` is measured against, so that the row shows the CPU work alone.
    pub fn save_unsynced<T: Serialize>(version: u32, data: &T, path: &Path) -> io::Result<()> {
        write(
            &serde_json::to_vec(&Envelope { version, data })?,
            path,
            false,
        )
    }

    /// The file-system half of [`save`].
    pub fn write_durably(bytes: &[u8], path: &Path) -> io::Result<()> {
        write(bytes, path, true)
    }

    /// [`write_durably`] without its two fsyncs: a temporary file renamed over the target.
    pub fn write_unsynced(bytes: &[u8], path: &Path) -> io::Result<()> {
        write(bytes, path, false)
    }

    fn write(bytes: &[u8], path: &Path, sync: bool) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp_name = path.file_name().unwrap_or_default().to_owned();
        temp_name.push(".baseline-tmp");
        let temp = dir.join(temp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&temp, path)?;
        if sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Plain load: `fs::read` + `serde_json::from_slice`.
    pub fn load<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
        let bytes = fs::read(path)?;
        let envelope: Envelope<T> = serde_json::from_slice(&bytes)?;
        Ok(envelope.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_have_the_sizes_the_suite_names() {
        let small = serde_json::to_vec(&Settings::sample()).unwrap().len();
        assert!((900..1_300).contains(&small), "small is {small} bytes");
        let medium = serde_json::to_vec(&Records::medium()).unwrap().len();
        assert!(
            (1_250_000..1_500_000).contains(&medium),
            "medium is {medium} bytes"
        );
    }

    #[test]
    fn the_real_world_shapes_are_each_about_a_mebibyte() {
        for (name, bytes) in [
            ("geometry", serde_json::to_vec(&shapes::Geometry::sample())),
            (
                "catalogue",
                serde_json::to_vec(&shapes::Catalogue::sample()),
            ),
            ("social", serde_json::to_vec(&shapes::Social::sample())),
        ] {
            let size = bytes.unwrap().len();
            assert!(
                (512 << 10..2 << 20).contains(&size),
                "{name} is {size} bytes"
            );
        }
    }

    #[test]
    fn a_version_1_file_migrates_to_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        let current = Records::generate(500);
        RecordsV1::from_current(&current).save(&path).unwrap();
        assert_eq!(Records::load(&path).unwrap(), current);
    }

    #[test]
    fn baseline_and_persist_read_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        baseline::save(Settings::VERSION, &Settings::sample(), &path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), Settings::sample());
        Settings::sample().save(&path).unwrap();
        assert_eq!(
            baseline::load::<Settings>(&path).unwrap(),
            Settings::sample()
        );
    }
}
