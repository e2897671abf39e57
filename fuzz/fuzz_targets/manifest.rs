//! Any bytes as a release manifest (schema 1, or schema 2 with its
//! encodings): parsing and validation never panic, and
//! a manifest that passes survives a round trip and passes again.

#![no_main]

use flatipfs_format::release::{Manifest, ManifestLimits};
use libfuzzer_sys::fuzz_target;

/// Small limits too, so that the limit checks are reached.
const SMALL: ManifestLimits = ManifestLimits {
    max_entries: 8,
    max_file_size: 1 << 16,
    max_startup_ranges: 4,
    max_startup_bytes: 1 << 16,
};

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    for limits in [ManifestLimits::default(), SMALL] {
        if manifest.validate(limits).is_ok() {
            let text = serde_json::to_vec(&manifest).expect("a valid manifest serializes");
            let again: Manifest = serde_json::from_slice(&text).expect("and parses back");
            assert_eq!(again, manifest);
            again.validate(limits).expect("and is still valid");
        }
    }
});
