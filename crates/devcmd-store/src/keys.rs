//! Key encodings: fixed-width big-endian numbers after a version byte, so
//! keys sort by application or device, then creation time, then id.

use devcmd_core::{AppId, CommandId, DeviceId, Timestamp};

use crate::codec::DecodeError;

/// The version byte index keys start with.
pub const KEY_VERSION: u8 = 1;

/// Key of a command record: its id, 16 bytes big-endian.
pub fn command_key(id: CommandId) -> [u8; 16] {
    id.to_u128().to_be_bytes()
}

/// Prefix of every index key of one application.
pub fn app_prefix(app: &AppId) -> Vec<u8> {
    let a = app.as_str().as_bytes();
    let mut k = Vec::with_capacity(3 + a.len() + 24);
    k.push(KEY_VERSION);
    // An app id is at most 256 bytes (checked by AppId::new).
    k.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_be_bytes());
    k.extend_from_slice(a);
    k
}

/// Index key: the application's commands by creation time.
pub fn by_app_key(app: &AppId, created: Timestamp, id: CommandId) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(&created.as_millis().to_be_bytes());
    k.extend_from_slice(&id.to_u128().to_be_bytes());
    k
}

/// Prefix of every index key of one device.
pub fn device_prefix(device: &DeviceId) -> Vec<u8> {
    let text = device.to_string();
    let d = text.as_bytes();
    let mut k = Vec::with_capacity(2 + d.len() + 24);
    k.push(KEY_VERSION);
    // A device id is at most 64 bytes (checked by DeviceId::new).
    k.push(u8::try_from(d.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(d);
    k
}

/// Index key: the device's commands by creation time.
pub fn by_device_key(device: &DeviceId, created: Timestamp, id: CommandId) -> Vec<u8> {
    let mut k = device_prefix(device);
    k.extend_from_slice(&created.as_millis().to_be_bytes());
    k.extend_from_slice(&id.to_u128().to_be_bytes());
    k
}

/// Width of one history counter bucket, in milliseconds (a second).
pub const COUNT_BUCKET_MS: u64 = 1_000;

/// Key of a history retention entry: version, the instant the command
/// ended, then its id; the sweep reads them in that order.
pub fn ended_key(ended: Timestamp, id: CommandId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = KEY_VERSION;
    k[1..9].copy_from_slice(&ended.as_millis().to_be_bytes());
    k[9..].copy_from_slice(&id.to_u128().to_be_bytes());
    k
}

/// The end instant and command of a retention entry key.
pub fn decode_ended_key(key: &[u8]) -> Result<(Timestamp, CommandId), DecodeError> {
    if key.len() != 25 {
        return Err(err("wrong length", key.len()));
    }
    decode_index_tail(key)
}

/// Value of a history retention entry: what the sweep needs to delete the
/// command's index keys without reading its record (version, application,
/// device, creation time).
pub fn ended_value(app: &AppId, device: &DeviceId, created: Timestamp) -> Vec<u8> {
    let d = device.to_string();
    let mut v = app_prefix(app);
    // A device id is at most 64 bytes (checked by DeviceId::new).
    v.push(u8::try_from(d.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(d.as_bytes());
    v.extend_from_slice(&created.as_millis().to_be_bytes());
    v
}

/// The application, device and creation time of a retention entry's value.
pub fn decode_ended_value(v: &[u8]) -> Result<(AppId, DeviceId, Timestamp), DecodeError> {
    let (app, rest) = split_app_prefix(v)?;
    let at = v.len() - rest.len();
    let dev_len = usize::from(*rest.first().ok_or(err("truncated", at))?);
    let dev = rest.get(1..1 + dev_len).ok_or(err("truncated", at + 1))?;
    let created: [u8; 8] = rest
        .get(1 + dev_len..)
        .and_then(|s| s.try_into().ok())
        .ok_or(err("wrong length", v.len()))?;
    let dev = std::str::from_utf8(dev)
        .ok()
        .and_then(|d| DeviceId::new(d).ok())
        .ok_or(err("invalid deviceId", at + 1))?;
    Ok((app, dev, Timestamp::from_millis(u64::from_be_bytes(created))))
}

/// Key of a history counter: the application, then its bucket (creation
/// time / [`COUNT_BUCKET_MS`]).
pub fn count_key(app: &AppId, bucket: u64) -> Vec<u8> {
    let mut k = app_prefix(app);
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

/// The application and bucket of a counter key.
pub fn decode_count_key(key: &[u8]) -> Result<(AppId, u64), DecodeError> {
    let (app, rest) = split_app_prefix(key)?;
    let bucket: [u8; 8] = rest.try_into().map_err(|_| err("wrong length", key.len()))?;
    Ok((app, u64::from_be_bytes(bucket)))
}

/// The application named by an [`app_prefix`] at the start of `bytes`, and what follows it.
fn split_app_prefix(bytes: &[u8]) -> Result<(AppId, &[u8]), DecodeError> {
    if bytes.first() != Some(&KEY_VERSION) {
        return Err(err("unknown version", 0));
    }
    let len_bytes: [u8; 2] = bytes
        .get(1..3)
        .and_then(|s| s.try_into().ok())
        .ok_or(err("truncated", 1))?;
    let end = 3 + usize::from(u16::from_be_bytes(len_bytes));
    let app = bytes.get(3..end).ok_or(err("truncated", 3))?;
    let app = std::str::from_utf8(app)
        .ok()
        .and_then(|a| AppId::new(a).ok())
        .ok_or(err("invalid appId", 3))?;
    Ok((app, &bytes[end..]))
}

fn err(what: &'static str, at: usize) -> DecodeError {
    DecodeError {
        record: "index key",
        what,
        at,
    }
}

/// The creation time and command id at the end of an index key.
pub fn decode_index_tail(key: &[u8]) -> Result<(Timestamp, CommandId), DecodeError> {
    if key.first() != Some(&KEY_VERSION) {
        return Err(err("unknown version", 0));
    }
    let n = key.len();
    let tail = key
        .get(n.checked_sub(24).ok_or(err("truncated", n))?..)
        .ok_or(err("truncated", n))?;
    let mut t = [0u8; 8];
    t.copy_from_slice(&tail[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&tail[8..]);
    Ok((
        Timestamp::from_millis(u64::from_be_bytes(t)),
        CommandId::from_u128(u128::from_be_bytes(id)),
    ))
}

/// The application, creation time and command of an application index key.
pub fn decode_by_app_key(key: &[u8]) -> Result<(AppId, Timestamp, CommandId), DecodeError> {
    let (app, rest) = split_app_prefix(key)?;
    if rest.len() != 24 {
        return Err(err("wrong length", key.len()));
    }
    let (t, id) = decode_index_tail(key)?;
    Ok((app, t, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time_then_id_and_decode_back() {
        let app = AppId::new("app").unwrap();
        let a = by_app_key(&app, Timestamp::from_millis(5), CommandId::from_u128(9));
        let b = by_app_key(&app, Timestamp::from_millis(6), CommandId::from_u128(1));
        assert!(a < b);
        assert!(a.starts_with(&app_prefix(&app)));
        assert_eq!(
            decode_by_app_key(&b).unwrap(),
            (app.clone(), Timestamp::from_millis(6), CommandId::from_u128(1))
        );
        let dev = DeviceId::new("92d3f8da-200a-4143-8d0d-591a7e11de6c").unwrap();
        let k = by_device_key(&dev, Timestamp::from_millis(7), CommandId::from_u128(3));
        assert_eq!(
            decode_index_tail(&k).unwrap(),
            (Timestamp::from_millis(7), CommandId::from_u128(3))
        );
        assert!(decode_by_app_key(&[1, 0]).is_err());
        let e = ended_key(Timestamp::from_millis(8), CommandId::from_u128(4));
        assert_eq!(
            decode_ended_key(&e).unwrap(),
            (Timestamp::from_millis(8), CommandId::from_u128(4))
        );
        assert!(e < ended_key(Timestamp::from_millis(9), CommandId::from_u128(0)));
        assert!(decode_ended_key(&e[..24]).is_err());
        let v = ended_value(&app, &dev, Timestamp::from_millis(9));
        assert_eq!(
            decode_ended_value(&v).unwrap(),
            (app.clone(), dev.clone(), Timestamp::from_millis(9))
        );
        assert!(decode_ended_value(&v[..v.len() - 1]).is_err());
        let c = count_key(&app, 77);
        assert_eq!(decode_count_key(&c).unwrap(), (app.clone(), 77));
        assert!(decode_count_key(&c[..c.len() - 1]).is_err());
        assert!(decode_index_tail(&[]).is_err());
    }
}
