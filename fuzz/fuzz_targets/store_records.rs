//! The store's record and key decoders on arbitrary bytes: no panic, and
//! whatever decodes encodes back to bytes that decode to the same record.
#![no_main]

use devcmd_store::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(c) = decode_command(bytes) {
        assert_eq!(decode_command(&encode_command(&c)).as_ref(), Ok(&c));
    }
    if let Ok(a) = decode_app(bytes) {
        assert_eq!(decode_app(&encode_app(&a)).as_ref(), Ok(&a));
    }
    if let Ok(d) = decode_device(bytes) {
        assert_eq!(decode_device(&encode_device(&d)).as_ref(), Ok(&d));
    }
    if let Ok(t) = decode_task(bytes) {
        assert_eq!(decode_task(&encode_task(&t)).as_ref(), Ok(&t));
    }
    if let Ok((app, t, id)) = decode_by_app_key(bytes) {
        assert_eq!(by_app_key(&app, t, id), bytes);
    }
    let _ = decode_index_tail(bytes);
    if let Ok((t, id)) = decode_ended_key(bytes) {
        assert_eq!(ended_key(t, id).as_slice(), bytes);
    }
    if let Ok((app, device, created)) = decode_ended_value(bytes) {
        assert_eq!(ended_value(&app, &device, created), bytes);
    }
    if let Ok((app, bucket)) = decode_count_key(bytes) {
        assert_eq!(count_key(&app, bucket), bytes);
    }
});
