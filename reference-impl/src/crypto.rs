//! Cryptographic primitives of SoftBus v1 (spec sections 4–7), shared by the reference core and
//! by the conformance suite's lower tester, which builds and reads frames with them.
//!
//! Nothing here keeps protocol state beyond one key or one window: the state machines that use
//! these live in [`crate::endpoint`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::wire::frame::record_aad;

/// The Noise protocol name (spec 6).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_SHA256";
/// The Noise prologue: "SoftBus/1" followed by the version byte.
pub const PROLOGUE: &[u8] = b"SoftBus/1\x01";
/// Domain separation for device IDs.
pub const DEVICE_ID_LABEL: &[u8] = b"softbus/1 device-id";

/// An 8-byte device ID, derived from the static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 8]);

impl DeviceId {
    /// First 8 bytes of SHA-256("softbus/1 device-id" || public key).
    pub fn from_public_key(pk: &[u8; 32]) -> DeviceId {
        let mut h = Sha256::new();
        h.update(DEVICE_ID_LABEL);
        h.update(pk);
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        DeviceId(id)
    }

    /// Parse 16 hex digits.
    pub fn from_hex(s: &str) -> Option<DeviceId> {
        let raw = hex::decode(s).ok()?;
        let arr: [u8; 8] = raw.try_into().ok()?;
        Some(DeviceId(arr))
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.to_hex())
    }
}

/// A device's static X25519 identity.
#[derive(Clone)]
pub struct Identity {
    secret: [u8; 32],
    public: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.device_id())
    }
}

impl Identity {
    /// Build from a 32-byte X25519 secret.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let sk = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&sk).to_bytes();
        Identity {
            secret: sk.to_bytes(),
            public,
        }
    }

    /// Generate a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Identity {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Identity::from_secret(secret)
    }

    /// The secret key bytes (for Noise and for persisting the key file).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The device ID.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.public)
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    mac.update(label);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The pairing transcript and the confirmation values derived from the SPAKE2 key (spec 5).
pub struct PairingTranscript {
    key: Vec<u8>,
    transcript: Vec<u8>,
}

impl PairingTranscript {
    /// Bind the SPAKE2 key to both static keys and both SPAKE2 messages.
    pub fn new(
        key: Vec<u8>,
        pub_a: &[u8; 32],
        pub_b: &[u8; 32],
        msg_a: &[u8],
        msg_b: &[u8],
    ) -> Self {
        let mut transcript = Vec::with_capacity(64 + msg_a.len() + msg_b.len());
        transcript.extend_from_slice(pub_a);
        transcript.extend_from_slice(pub_b);
        transcript.extend_from_slice(msg_a);
        transcript.extend_from_slice(msg_b);
        PairingTranscript { key, transcript }
    }

    /// confirm_B, sent by the responder.
    pub fn responder_confirm(&self) -> [u8; 32] {
        hmac(&self.key, b"softbus/1 pair responder", &[&self.transcript])
    }

    /// confirm_A, sent by the initiator.
    pub fn initiator_confirm(&self) -> [u8; 32] {
        hmac(&self.key, b"softbus/1 pair initiator", &[&self.transcript])
    }

    /// The MAC over a PAIR_RESULT status.
    pub fn result_mac(&self, status: u16) -> [u8; 32] {
        hmac(
            &self.key,
            b"softbus/1 pair result",
            &[&status.to_be_bytes()],
        )
    }
}

/// Constant-time comparison of two MACs.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SPAKE2 identity of the pairing initiator (spec 5).
pub const SPAKE2_ID_A: &[u8] = b"softbus/1 initiator";
/// SPAKE2 identity of the pairing responder.
pub const SPAKE2_ID_B: &[u8] = b"softbus/1 responder";

/// SPAKE2 side A start: returns the state and the 33-byte message.
pub fn spake2_start_a<R: RngCore + CryptoRng>(
    pin: &str,
    rng: R,
) -> (spake2::Spake2<spake2::Ed25519Group>, Vec<u8>) {
    spake2::Spake2::<spake2::Ed25519Group>::start_a_with_rng(
        &spake2::Password::new(pin.as_bytes()),
        &spake2::Identity::new(SPAKE2_ID_A),
        &spake2::Identity::new(SPAKE2_ID_B),
        rng,
    )
}

/// SPAKE2 side B start.
pub fn spake2_start_b<R: RngCore + CryptoRng>(
    pin: &str,
    rng: R,
) -> (spake2::Spake2<spake2::Ed25519Group>, Vec<u8>) {
    spake2::Spake2::<spake2::Ed25519Group>::start_b_with_rng(
        &spake2::Password::new(pin.as_bytes()),
        &spake2::Identity::new(SPAKE2_ID_A),
        &spake2::Identity::new(SPAKE2_ID_B),
        rng,
    )
}

/// Whether `pin` is a valid SoftBus PIN: exactly six ASCII digits.
pub fn is_valid_pin(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}

/// A Noise handshake builder with the SoftBus parameters and prologue.
pub fn noise_builder(identity: &Identity) -> snow::Builder<'_> {
    // The params string is a constant that snow is known to support.
    let params = match NOISE_PARAMS.parse() {
        Ok(p) => p,
        Err(_) => unreachable!("Noise_XX_25519_AESGCM_SHA256 is supported by snow"),
    };
    snow::Builder::new(params)
        .local_private_key(identity.secret())
        .prologue(PROLOGUE)
}

/// One direction's AES-256-GCM record key with its epoch (spec 7).
#[derive(Clone)]
pub struct RecordKey {
    key: [u8; 32],
    /// Epoch number (rekey count modulo 256).
    pub epoch: u8,
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey(epoch {})", self.epoch)
    }
}

/// A record failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record failed authentication")]
pub struct AuthFailed;

impl RecordKey {
    /// A key at epoch 0.
    pub fn new(key: [u8; 32]) -> RecordKey {
        RecordKey { key, epoch: 0 }
    }

    /// The raw key (exported for the Wireshark key log).
    pub fn raw(&self) -> &[u8; 32] {
        &self.key
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.key).into())
    }

    fn nonce(seq: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        n
    }

    /// Encrypt `plaintext` as record `seq` to connection `conn_id`; returns ciphertext || tag.
    pub fn seal(&self, conn_id: u32, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let aad = record_aad(conn_id, self.epoch, seq);
        let nonce = Self::nonce(seq);
        match self.cipher().encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        ) {
            Ok(ct) => ct,
            // aes-gcm only fails to encrypt for plaintexts over 64 GiB.
            Err(_) => unreachable!("AES-GCM plaintext larger than 64 GiB"),
        }
    }

    /// Decrypt and authenticate record `seq` of connection `conn_id`.
    pub fn open(&self, conn_id: u32, seq: u64, ciphertext: &[u8]) -> Result<Vec<u8>, AuthFailed> {
        let aad = record_aad(conn_id, self.epoch, seq);
        let nonce = Self::nonce(seq);
        self.cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| AuthFailed)
    }

    /// The next epoch's key: Noise REKEY, i.e. the first 32 bytes of
    /// AES-GCM-Encrypt(k, nonce = 2^64-1, ad = empty, 32 zero bytes).
    pub fn rekeyed(&self) -> RecordKey {
        let nonce = Self::nonce(u64::MAX);
        let ct = match self.cipher().encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &[0u8; 32],
                aad: &[],
            },
        ) {
            Ok(ct) => ct,
            Err(_) => unreachable!("32-byte AES-GCM encryption cannot fail"),
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(&ct[..32]);
        RecordKey {
            key,
            epoch: self.epoch.wrapping_add(1),
        }
    }
}

/// Size of the anti-replay window in records (spec 7).
pub const REPLAY_WINDOW: u64 = 64;

/// A sliding anti-replay window over record sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far, if any.
    highest: Option<u64>,
    /// Bit i set: `highest - i` was seen.
    bits: u64,
}

/// Why the replay window refused a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// New and inside the window.
    Fresh,
    /// Already seen.
    Duplicate,
    /// Older than the window.
    TooOld,
}

impl ReplayWindow {
    /// Classify `seq` without recording it (check before decrypting, commit after).
    pub fn check(&self, seq: u64) -> ReplayVerdict {
        let Some(high) = self.highest else {
            return ReplayVerdict::Fresh;
        };
        if seq > high {
            return ReplayVerdict::Fresh;
        }
        let age = high - seq;
        if age >= REPLAY_WINDOW {
            ReplayVerdict::TooOld
        } else if self.bits & (1u64 << age) != 0 {
            ReplayVerdict::Duplicate
        } else {
            ReplayVerdict::Fresh
        }
    }

    /// Record `seq` as seen (after it authenticated).
    pub fn commit(&mut self, seq: u64) {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.bits = 1;
            }
            Some(high) if seq > high => {
                let shift = seq - high;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.highest = Some(seq);
            }
            Some(high) => {
                let age = high - seq;
                if age < REPLAY_WINDOW {
                    self.bits |= 1u64 << age;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_tamper() {
        let k = RecordKey::new([7u8; 32]);
        let ct = k.seal(5, 9, b"hello");
        assert_eq!(k.open(5, 9, &ct).unwrap(), b"hello");
        assert!(k.open(5, 10, &ct).is_err(), "seq is bound");
        assert!(k.open(6, 9, &ct).is_err(), "conn_id is bound");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(k.open(5, 9, &bad).is_err());
        let k2 = k.rekeyed();
        assert_eq!(k2.epoch, 1);
        assert_ne!(k2.raw(), k.raw());
        assert!(k2.open(5, 9, &ct).is_err());
    }

    #[test]
    fn replay_window_semantics() {
        let mut w = ReplayWindow::default();
        for s in [0u64, 1, 2, 5] {
            assert_eq!(w.check(s), ReplayVerdict::Fresh);
            w.commit(s);
        }
        assert_eq!(w.check(2), ReplayVerdict::Duplicate);
        assert_eq!(w.check(3), ReplayVerdict::Fresh);
        w.commit(100);
        assert_eq!(w.check(36), ReplayVerdict::TooOld);
        assert_eq!(w.check(37), ReplayVerdict::Fresh);
        assert_eq!(w.check(100), ReplayVerdict::Duplicate);
    }

    #[test]
    fn device_id_is_stable() {
        let id = Identity::from_secret([1u8; 32]);
        assert_eq!(id.device_id(), DeviceId::from_public_key(id.public()));
        assert_eq!(
            DeviceId::from_hex(&id.device_id().to_hex()),
            Some(id.device_id())
        );
    }
}
