//! Files across releases, both ways. A program rolled back meets a file of a newer version:
//! [`OnNewer`] reads it when its data reads as the program's version, read-only or keeping the
//! fields the program does not know. A program about to be rolled back writes a file an older
//! release reads: [`Options::save_as_version`](crate::Options::save_as_version) walks the
//! declared downgrade steps (`#[persist(downgrade)]`).

mod downgrade;
mod newer;

pub(crate) use self::downgrade::encode_at;
pub use self::newer::{NewerFile, OnNewer};
pub(crate) use self::newer::{load, read_bytes, write_over};
