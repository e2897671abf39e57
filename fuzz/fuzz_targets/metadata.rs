//! Any bytes as a release's Flatpak `metadata`: the strict keyfile parser
//! and `metadata::parse` never panic; what parses grants nothing beyond
//! itself (`widened` of a metadata against itself is empty), and every
//! value of a parsed keyfile reads as a string or a list without panicking.

#![no_main]

use flatipfs_format::metadata::{self, KeyFile, Permissions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = KeyFile::parse(data) {
        assert!(data.len() <= metadata::MAX_SIZE);
        for (group, keys) in &file.groups {
            for (key, _) in keys {
                let _ = file.string(group, key);
                let _ = file.list(group, key);
            }
        }
    }
    let Ok(parsed) = metadata::parse(data) else {
        return;
    };
    KeyFile::parse(data).expect("what metadata::parse takes is a strict keyfile");
    let p = &parsed.permissions;
    assert!(metadata::widened(p, p).is_empty(), "{p:?} widens itself");
    // Against nothing, either way: no panic.
    let _ = metadata::widened(&Permissions::default(), p);
    let _ = metadata::widened(p, &Permissions::default());
    let _ = flatipfs_format::exports::own_names(&parsed);
});
