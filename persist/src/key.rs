//! [`Key`]: the secret an encrypted file is sealed with (feature `encryption`).
//!
//! Without the feature, `Key` is an empty enum: no value of it exists, so every encryption path
//! compiles away while the frame code stays the same.

/// Length of the XChaCha20-Poly1305 tag at the end of an encrypted payload.
pub(crate) const TAG_LEN: usize = 16;

#[cfg(not(feature = "encryption"))]
mod disabled {
    use crate::frame::FrameError;

    /// No key exists in a build without the `encryption` feature.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Key {}

    impl Key {
        pub(crate) fn seal(
            &self,
            _header: &mut Vec<u8>,
            _payload: &mut Vec<u8>,
        ) -> std::io::Result<()> {
            match *self {}
        }

        pub(crate) fn open(
            &self,
            _header: &[u8],
            _payload: Vec<u8>,
        ) -> Result<Vec<u8>, FrameError> {
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

    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
    use zeroize::Zeroizing;

    use super::TAG_LEN;
    use crate::frame::{ENCRYPTION_BLOCK, FrameError};

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
    #[derive(Clone, PartialEq, Eq)]
    pub struct Key(Secret);

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
            Key(Secret::Raw(Zeroizing::new(bytes)))
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
            Ok(Key(Secret::Raw(bytes)))
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
            Key(Secret::Passphrase(Zeroizing::new(
                passphrase.into().into_bytes(),
            )))
        }

        /// Appends the key-derivation block and the nonce to `header`, then encrypts `payload`
        /// in place with the whole header as associated data and appends the tag.
        pub(crate) fn seal(
            &self,
            header: &mut Vec<u8>,
            payload: &mut Vec<u8>,
        ) -> std::io::Result<()> {
            let mut salt = [0u8; 16];
            let (kdf, cost) = match &self.0 {
                Secret::Raw(_) => (RAW, [0u32; 3]),
                Secret::Passphrase(_) => {
                    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
                    let params = argon2::Params::default();
                    (
                        ARGON2ID,
                        [params.m_cost(), params.t_cost(), params.p_cost()],
                    )
                }
            };
            let mut nonce = [0u8; 24];
            getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
            let start = header.len();
            header.extend_from_slice(&[kdf, 0, 0, 0]);
            for value in cost {
                header.extend_from_slice(&value.to_le_bytes());
            }
            header.extend_from_slice(&salt);
            header.extend_from_slice(&nonce);
            debug_assert_eq!(header.len() - start, ENCRYPTION_BLOCK);
            let key = self
                .derive(kdf, cost, &salt)
                .map_err(|_| std::io::Error::other("key derivation failed"))?;
            let cipher = XChaCha20Poly1305::new((&*key).into());
            let tag = cipher
                .encrypt_in_place_detached(XNonce::from_slice(&nonce), header, payload)
                .map_err(|_| std::io::Error::other("the payload is too large to encrypt"))?;
            payload.extend_from_slice(&tag);
            Ok(())
        }

        /// Decrypts `payload` (ciphertext and tag) of a file whose header is `header`.
        pub(crate) fn open(
            &self,
            header: &[u8],
            mut payload: Vec<u8>,
        ) -> Result<Vec<u8>, FrameError> {
            let block = &header[header.len() - ENCRYPTION_BLOCK..];
            let kdf = block[0];
            let word = |i: usize| {
                u32::from_le_bytes(block[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes"))
            };
            let cost = [word(0), word(1), word(2)];
            let salt: [u8; 16] = block[16..32].try_into().expect("16 bytes");
            let nonce = XNonce::clone_from_slice(&block[32..56]);
            if block[1..4] != [0, 0, 0] {
                return Err(FrameError::Corrupt(
                    "the encryption header's reserved bytes are not zero".to_owned(),
                ));
            }
            match kdf {
                RAW if matches!(self.0, Secret::Passphrase(_)) => {
                    return Err(FrameError::Decrypt);
                }
                ARGON2ID if matches!(self.0, Secret::Raw(_)) => {
                    return Err(FrameError::Decrypt);
                }
                RAW | ARGON2ID => {}
                other => {
                    return Err(FrameError::Unsupported(format!(
                        "unknown key derivation {other}, written by a newer persist"
                    )));
                }
            }
            if kdf == ARGON2ID
                && (cost[0] > MAX_MEMORY_KIB || cost[1] > MAX_ITERATIONS || cost[2] > MAX_LANES)
            {
                return Err(FrameError::Corrupt(format!(
                    "the header asks for an Argon2id cost above persist's limits ({} KiB, {} \
                     iterations, {} lanes)",
                    cost[0], cost[1], cost[2]
                )));
            }
            let key = self.derive(kdf, cost, &salt).map_err(|_| {
                FrameError::Corrupt("the header's Argon2id parameters are invalid".to_owned())
            })?;
            let Some(split) = payload.len().checked_sub(TAG_LEN) else {
                return Err(FrameError::Corrupt(
                    "truncated: the encrypted payload is shorter than its tag".to_owned(),
                ));
            };
            let tag = Tag::clone_from_slice(&payload[split..]);
            payload.truncate(split);
            let cipher = XChaCha20Poly1305::new((&*key).into());
            cipher
                .decrypt_in_place_detached(&nonce, header, &mut payload, &tag)
                .map_err(|_| FrameError::Decrypt)?;
            Ok(payload)
        }

        /// The 32-byte cipher key for a file's derivation settings.
        fn derive(
            &self,
            kdf: u8,
            cost: [u32; 3],
            salt: &[u8; 16],
        ) -> Result<Zeroizing<[u8; 32]>, argon2::Error> {
            match &self.0 {
                Secret::Raw(bytes) => Ok(bytes.clone()),
                Secret::Passphrase(passphrase) => {
                    debug_assert_eq!(kdf, ARGON2ID);
                    let params = argon2::Params::new(cost[0], cost[1], cost[2], Some(32))?;
                    let argon = argon2::Argon2::new(
                        argon2::Algorithm::Argon2id,
                        argon2::Version::V0x13,
                        params,
                    );
                    let mut key = Zeroizing::new([0u8; 32]);
                    argon.hash_password_into(passphrase, salt, &mut *key)?;
                    Ok(key)
                }
            }
        }
    }
}
