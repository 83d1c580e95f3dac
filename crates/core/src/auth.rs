//! Keys and tokens: random generation, SHA-256 at rest, constant-time compare.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random secret: 32 bytes as hex (API keys, admin key, tokens).
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares two strings without an early exit on the first difference.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
