//! Identifiers: applications, devices, commands and cancel tasks.
//!
//! `CommandId` and `TaskId` are 128-bit values printed as 32 lower-case hex
//! characters (the platform's format: a UUID without hyphens). Their top 16
//! bits name the shard that owns them and the next 32 bits the slot inside
//! that shard, so a lookup by id locks exactly one shard and needs no global
//! map. The remaining 80 bits are random, so an id that outlived its slot
//! never matches the slot's next occupant.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::InvalidInput;

/// Largest length of an application id, in bytes (the platform's `String(256)`).
pub const APP_ID_LEN_MAX: usize = 256;
/// Largest length of a device id, in bytes (the platform's `String(1-64)`).
pub const DEVICE_ID_LEN_MAX: usize = 64;

/// An application's id: an opaque, non-empty string of at most 256 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(Arc<str>);

impl AppId {
    /// Checks and wraps an application id.
    pub fn new(id: &str) -> Result<Self, InvalidInput> {
        if id.is_empty() || id.len() > APP_ID_LEN_MAX || id.chars().any(char::is_control) {
            return Err(InvalidInput::new("appId", "must be 1..=256 printable characters"));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({})", &*self.0)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's id. Registered devices get a hyphenated lower-case UUID, kept
/// in 16 bytes; any other non-empty text of at most 64 bytes is accepted too
/// (library users may bring their own ids).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(DeviceIdRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DeviceIdRepr {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl DeviceId {
    /// Checks and wraps a device id.
    pub fn new(id: &str) -> Result<Self, InvalidInput> {
        if id.is_empty() || id.len() > DEVICE_ID_LEN_MAX || id.chars().any(char::is_control) {
            return Err(InvalidInput::new("deviceId", "must be 1..=64 printable characters"));
        }
        Ok(match parse_uuid(id) {
            Some(bytes) => Self(DeviceIdRepr::Uuid(bytes)),
            None => Self(DeviceIdRepr::Text(id.into())),
        })
    }

    /// A device id in UUID form made from 128 bits (a random source gives a random UUID).
    pub fn from_uuid_bits(bits: u128) -> Self {
        let mut bytes = bits.to_be_bytes();
        // Version 4, variant 1, as a UUID reader expects of random ids.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(DeviceIdRepr::Uuid(bytes))
    }

    /// A stable 64-bit hash of the id, the same in every process: it decides
    /// the device's shard, which command ids record, so it must never change.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        match &self.0 {
            DeviceIdRepr::Uuid(bytes) => bytes.iter().copied().for_each(&mut eat),
            DeviceIdRepr::Text(text) => text.bytes().for_each(&mut eat),
        }
        // Final avalanche so that the low bits (the shard) depend on every byte.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            DeviceIdRepr::Uuid(b) => {
                // Formatted into a stack buffer and written once: ids are
                // printed in every API answer, and per-byte `write!` was a
                // visible share of a create's cost.
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = [0u8; 36];
                let mut at = 0;
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out[at] = b'-';
                        at += 1;
                    }
                    out[at] = HEX[usize::from(byte >> 4)];
                    out[at + 1] = HEX[usize::from(byte & 0xf)];
                    at += 2;
                }
                // Only ASCII hex digits and hyphens were written.
                f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
            }
            DeviceIdRepr::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Parses the canonical lower-case hyphenated UUID form only, so that the
/// text form round-trips exactly.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = lower_hex_value(c)?;
        out[nibbles / 2] |= v << (if nibbles.is_multiple_of(2) { 4 } else { 0 });
        nibbles += 1;
    }
    Some(out)
}

/// The splitmix64 generator: a fast, well-mixed sequence from a seed, for ids.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn parse_hex128(s: &str, field: &'static str) -> Result<u128, InvalidInput> {
    if s.len() != 32 {
        return Err(InvalidInput::new(field, "must be 32 lower-case hex characters"));
    }
    s.bytes().try_fold(0u128, |acc, c| {
        lower_hex_value(c)
            .map(|v| (acc << 4) | u128::from(v))
            .ok_or_else(|| InvalidInput::new(field, "must be 32 lower-case hex characters"))
    })
}

macro_rules! sharded_id {
    ($name:ident, $field:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u128);

        impl $name {
            /// Builds an id from its shard, its slot in the shard and random bits.
            pub fn compose(shard: u16, slot: u32, random: u128) -> Self {
                let random = random & ((1u128 << 80) - 1);
                Self((u128::from(shard) << 112) | (u128::from(slot) << 80) | random)
            }

            /// The shard that owns it.
            pub fn shard(self) -> u16 {
                // Truncation intended: the top 16 bits are the shard.
                (self.0 >> 112) as u16
            }

            /// The slot inside the shard.
            pub fn slot(self) -> u32 {
                // Truncation intended: bits 80..112 are the slot.
                (self.0 >> 80) as u32
            }

            /// The 128 bits of the id.
            pub fn to_u128(self) -> u128 {
                self.0
            }

            /// The id from its 128 bits (as stored).
            pub fn from_u128(bits: u128) -> Self {
                Self(bits)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = [0u8; 32];
                for (i, c) in out.iter_mut().enumerate() {
                    *c = HEX[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
                }
                // Only ASCII hex digits were written.
                f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:032x})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex128(s, $field).map(Self)
            }
        }
    };
}

sharded_id!(
    CommandId,
    "commandId",
    "A command's id: 32 lower-case hex characters carrying its shard and slot."
);
sharded_id!(
    TaskId,
    "taskId",
    "A cancel task's id: 32 lower-case hex characters carrying its shard and slot."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_id_round_trips_and_keeps_its_parts() {
        let id = CommandId::compose(63, 123_456, 0xdead_beef);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text, text.to_lowercase());
        let back: CommandId = text.parse().unwrap();
        assert_eq!(back, id);
        assert_eq!(back.shard(), 63);
        assert_eq!(back.slot(), 123_456);
    }

    #[test]
    fn command_id_rejects_bad_text() {
        for bad in [
            "",
            "0e344774e64f4eefacb7ddf31f29b16",
            "0E344774E64F4EEFACB7DDF31F29B16C",
            "0e344774-e64f-4eef-acb7-ddf31f29b16c",
            "zz344774e64f4eefacb7ddf31f29b16c",
        ] {
            assert!(bad.parse::<CommandId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn device_id_uuid_form_round_trips() {
        let text = "92d3f8da-200a-4143-8d0d-591a7e11de6c";
        let id = DeviceId::new(text).unwrap();
        assert!(matches!(id.0, DeviceIdRepr::Uuid(_)));
        assert_eq!(id.to_string(), text);
        let other = DeviceId::new("IMEI-8612345678").unwrap();
        assert_eq!(other.to_string(), "IMEI-8612345678");
        assert!(DeviceId::new("").is_err());
        assert!(DeviceId::new(&"x".repeat(65)).is_err());
        let random = DeviceId::from_uuid_bits(u128::MAX);
        assert_eq!(DeviceId::new(&random.to_string()).unwrap(), random);
    }

    #[test]
    fn stable_hash_is_fixed() {
        let id = DeviceId::new("92d3f8da-200a-4143-8d0d-591a7e11de6c").unwrap();
        assert_eq!(id.stable_hash(), id.clone().stable_hash());
        assert_ne!(id.stable_hash(), DeviceId::new("a").unwrap().stable_hash());
    }
}
