//! [`Key`]: the secret an encrypted file is sealed with (feature `encryption`).
//!
//! Without the feature, `Key` is an empty enum: no value of it exists, so every encryption path
//! compiles away while the frame code stays the same.

/// Length of the XChaCha20-Poly1305 tag at the end of an encrypted payload.
pub(crate) const TAG_LEN: usize = 16;

/// How an encrypted file's key is derived, and its nonce: the encryption block of a frame's
/// header (FORMAT.md), which the frame reads and writes and the key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sealing {
    /// 0: a raw key; 1: Argon2id of a passphrase.
    pub(crate) derivation: u8,
    /// Argon2id memory in KiB, iterations, lanes; zeros for a raw key.
    pub(crate) cost: [u32; 3],
    /// Argon2id salt; zeros for a raw key.
    pub(crate) salt: [u8; 16],
    /// XChaCha20-Poly1305 nonce.
    pub(crate) nonce: [u8; 24],
}

/// Why a payload did not decrypt.
#[derive(Debug)]
#[cfg_attr(not(feature = "encryption"), allow(dead_code))]
pub(crate) enum OpenError {
    /// Wrong key, or the file changed after it was written.
    Decrypt,
    /// A key derivation this version does not know.
    UnknownDerivation(u8),
    /// Argon2id costs above persist's limits (a hostile header asking for gigabytes).
    CostTooHigh([u32; 3]),
    /// Argon2id parameters the algorithm refuses.
    InvalidDerivation,
    /// The payload is shorter than its tag.
    Truncated,
}

#[cfg(not(feature = "encryption"))]
mod disabled {
    use super::{OpenError, Sealing};
    use crate::error::SealError;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Key {}

    impl Key {
        pub(crate) fn new_sealing(&self) -> Result<Sealing, SealError> {
            match *self {}
        }

        pub(crate) fn renew(&self, _template: &Sealing) -> Result<Sealing, SealError> {
            match *self {}
        }

        pub(crate) fn encrypt(
            &self,
            _sealing: &Sealing,
            _associated: &[u8],
            _payload: &mut Vec<u8>,
        ) -> Result<(), SealError> {
            match *self {}
        }

        pub(crate) fn decrypt(
            &self,
            _sealing: &Sealing,
            _associated: &[u8],
            _payload: Vec<u8>,
        ) -> Result<Vec<u8>, OpenError> {
            match *self {}
        }
    }
}

#[cfg(not(feature = "encryption"))]
pub(crate) use disabled::Key;

#[cfg(feature = "encryption")]
pub use enabled::{Key, KeyError};

#[cfg(feature = "encryption")]
mod enabled {
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
    use zeroize::Zeroizing;

    use super::{OpenError, Sealing, TAG_LEN};
    use crate::error::SealError;

    fn random_failed(error: getrandom::Error) -> SealError {
        SealError::Random(match error.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(error.to_string()),
        })
    }

    /// Key derivation byte of the header.
    const RAW: u8 = 0;
    const ARGON2ID: u8 = 1;

    /// The largest Argon2id cost a file may ask for: a hostile header must not make a load
    /// allocate gigabytes or spin for minutes before the tag check can fail.
    const MAX_MEMORY_KIB: u32 = 1 << 20;
    const MAX_ITERATIONS: u32 = 64;
    const MAX_LANES: u32 = 16;

    /// The secret an encrypted file is sealed with: 32 random bytes the application keeps (in
    /// the OS keyring, an environment variable), or a passphrase stretched with Argon2id.
    ///
    /// Files are encrypted with XChaCha20-Poly1305: a wrong key or a file changed after it was
    /// written is [`Error::Decrypt`](crate::Error::Decrypt), never garbage data. The secret is
    /// never printed (`Debug` shows `Key(<redacted>)`), never part of an error, and is zeroed
    /// in memory when the last copy of the key is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use persist::{Key, Options};
    ///
    /// // 64 hex digits, from wherever the application keeps its secrets.
    /// let key = Key::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")?;
    /// let options = Options::new().encrypt(key);
    /// # let _ = options;
    /// # Ok::<(), persist::KeyError>(())
    /// ```
    #[derive(Clone)]
    pub struct Key(Secret, Derived);

    /// The last key derived from a passphrase, with the salt and cost it was derived with: a
    /// journal seals every record with one salt (and its own nonce), so Argon2id runs once per
    /// journal, not once per record. Clones share it.
    #[derive(Clone, Default)]
    struct Derived(Arc<Mutex<Option<LastDerived>>>);

    /// A key derived from the passphrase, with the cost and salt it was derived with.
    type LastDerived = (([u32; 3], [u8; 16]), Zeroizing<[u8; 32]>);

    impl PartialEq for Key {
        fn eq(&self, other: &Key) -> bool {
            self.0 == other.0
        }
    }

    impl Eq for Key {}

    #[derive(Clone, PartialEq, Eq)]
    enum Secret {
        Raw(Zeroizing<[u8; 32]>),
        Passphrase(Zeroizing<Vec<u8>>),
    }

    /// A key that could not be made: the text is not 64 hex digits, or the environment
    /// variable is missing. Never contains the secret.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum KeyError {
        /// The text is not exactly 64 hex digits (32 bytes).
        #[error("a key must be 64 hex digits (32 bytes)")]
        NotHex,
        /// The environment variable is not set or not Unicode.
        #[error("environment variable {name} is not set")]
        MissingVariable {
            /// The variable's name.
            name: String,
        },
    }

    impl fmt::Debug for Key {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Key(<redacted>)")
        }
    }

    impl Key {
        /// A key of 32 bytes, for example from the OS keyring. Generate one with a CSPRNG
        /// (`getrandom`, `openssl rand -hex 32`) and keep it out of the state file's directory.
        pub fn from_bytes(bytes: [u8; 32]) -> Key {
            Key(Secret::Raw(Zeroizing::new(bytes)), Derived::default())
        }

        /// A key from 64 hex digits (surrounding whitespace ignored).
        ///
        /// # Errors
        ///
        /// [`KeyError::NotHex`] if the text is not 64 hex digits.
        pub fn from_hex(hex: &str) -> Result<Key, KeyError> {
            let hex = hex.trim().as_bytes();
            if hex.len() != 64 {
                return Err(KeyError::NotHex);
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            for (byte, pair) in bytes.iter_mut().zip(hex.chunks(2)) {
                let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyError::NotHex);
                *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
            }
            Ok(Key(Secret::Raw(bytes), Derived::default()))
        }

        /// A key from the environment variable `name`, holding 64 hex digits.
        ///
        /// # Errors
        ///
        /// [`KeyError::MissingVariable`] if it is not set, [`KeyError::NotHex`] if it does not
        /// hold 64 hex digits.
        pub fn from_env(name: &str) -> Result<Key, KeyError> {
            let value =
                Zeroizing::new(std::env::var(name).map_err(|_| KeyError::MissingVariable {
                    name: name.to_owned(),
                })?);
            Key::from_hex(&value)
        }

        /// A key stretched from a passphrase with Argon2id (19 MiB of memory, 2 iterations, 1
        /// lane: OWASP's recommendation). Each save draws a new random salt and stores it with
        /// the cost in the file's header; each save and load derives the key again, which takes
        /// tens of milliseconds by design.
        pub fn from_passphrase(passphrase: impl Into<String>) -> Key {
            Key(
                Secret::Passphrase(Zeroizing::new(passphrase.into().into_bytes())),
                Derived::default(),
            )
        }

        /// A fresh derivation block and nonce for one save: a new random nonce always, and for
        /// a passphrase a new random salt with Argon2id's default cost.
        pub(crate) fn new_sealing(&self) -> Result<Sealing, SealError> {
            let mut sealing = Sealing {
                derivation: RAW,
                cost: [0; 3],
                salt: [0; 16],
                nonce: [0; 24],
            };
            if let Secret::Passphrase(_) = &self.0 {
                let params = argon2::Params::default();
                sealing.derivation = ARGON2ID;
                sealing.cost = [params.m_cost(), params.t_cost(), params.p_cost()];
                getrandom::fill(&mut sealing.salt).map_err(random_failed)?;
            }
            getrandom::fill(&mut sealing.nonce).map_err(random_failed)?;
            Ok(sealing)
        }

        /// Encrypts `payload` in place and appends its tag, authenticating `associated` with it.
        /// `template` with a fresh nonce: the same key derivation (salt and cost), so a key
        /// derived once seals every frame made from it.
        pub(crate) fn renew(&self, template: &Sealing) -> Result<Sealing, SealError> {
            let mut sealing = *template;
            getrandom::fill(&mut sealing.nonce).map_err(random_failed)?;
            Ok(sealing)
        }

        pub(crate) fn encrypt(
            &self,
            sealing: &Sealing,
            associated: &[u8],
            payload: &mut Vec<u8>,
        ) -> Result<(), SealError> {
            let key = self
                .derive(sealing)
                .map_err(|error| SealError::KeyDerivation(error.to_string()))?;
            let cipher = XChaCha20Poly1305::new((&*key).into());
            let tag = cipher
                .encrypt_in_place_detached(XNonce::from_slice(&sealing.nonce), associated, payload)
                .map_err(|_| SealError::TooLarge)?;
            payload.extend_from_slice(&tag);
            Ok(())
        }

        /// Decrypts `payload` (ciphertext then tag), which must have been sealed with
        /// `associated`.
        pub(crate) fn decrypt(
            &self,
            sealing: &Sealing,
            associated: &[u8],
            mut payload: Vec<u8>,
        ) -> Result<Vec<u8>, OpenError> {
            match sealing.derivation {
                RAW if matches!(self.0, Secret::Passphrase(_)) => return Err(OpenError::Decrypt),
                ARGON2ID if matches!(self.0, Secret::Raw(_)) => return Err(OpenError::Decrypt),
                RAW | ARGON2ID => {}
                other => return Err(OpenError::UnknownDerivation(other)),
            }
            let [memory, iterations, lanes] = sealing.cost;
            if sealing.derivation == ARGON2ID
                && (memory > MAX_MEMORY_KIB || iterations > MAX_ITERATIONS || lanes > MAX_LANES)
            {
                return Err(OpenError::CostTooHigh(sealing.cost));
            }
            let key = self
                .derive(sealing)
                .map_err(|_| OpenError::InvalidDerivation)?;
            let split = payload
                .len()
                .checked_sub(TAG_LEN)
                .ok_or(OpenError::Truncated)?;
            let tag = Tag::clone_from_slice(&payload[split..]);
            payload.truncate(split);
            let cipher = XChaCha20Poly1305::new((&*key).into());
            cipher
                .decrypt_in_place_detached(
                    XNonce::from_slice(&sealing.nonce),
                    associated,
                    &mut payload,
                    &tag,
                )
                .map_err(|_| OpenError::Decrypt)?;
            Ok(payload)
        }

        fn derive(&self, sealing: &Sealing) -> Result<Zeroizing<[u8; 32]>, argon2::Error> {
            match &self.0 {
                Secret::Raw(bytes) => Ok(bytes.clone()),
                Secret::Passphrase(passphrase) => {
                    debug_assert_eq!(sealing.derivation, ARGON2ID);
                    let derived = (sealing.cost, sealing.salt);
                    let mut last = self.1.0.lock().unwrap_or_else(|poison| poison.into_inner());
                    if let Some((with, key)) = &*last
                        && *with == derived
                    {
                        return Ok(key.clone());
                    }
                    let [memory, iterations, lanes] = sealing.cost;
                    let params = argon2::Params::new(memory, iterations, lanes, Some(32))?;
                    let argon = argon2::Argon2::new(
                        argon2::Algorithm::Argon2id,
                        argon2::Version::V0x13,
                        params,
                    );
                    let mut key = Zeroizing::new([0u8; 32]);
                    argon.hash_password_into(passphrase, &sealing.salt, &mut *key)?;
                    *last = Some((derived, key.clone()));
                    Ok(key)
                }
            }
        }
    }
}
