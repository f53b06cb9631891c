//! [`Secret`]: a string the server uses but never shows — `Debug` prints no part of it, and
//! there is no `Display` or `Serialize`.

use sha2::{Digest, Sha256};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is sent upstream or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex digits of SHA-256: tells operators which key is live, reveals nothing.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(self.0.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}
