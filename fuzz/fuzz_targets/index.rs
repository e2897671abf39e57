//! Any bytes as a store index: parsing and validation never panic, and an
//! index that passes survives a round trip and passes again.

#![no_main]

use flatipfs_format::index::{IndexLimits, StoreIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = serde_json::from_slice::<StoreIndex>(data) else {
        return;
    };
    for limits in [IndexLimits::default(), IndexLimits { max_apps: 2 }] {
        if index.validate(limits).is_ok() {
            let text = serde_json::to_vec(&index).expect("a valid index serializes");
            let again: StoreIndex = serde_json::from_slice(&text).expect("and parses back");
            assert_eq!(again, index);
            again.validate(limits).expect("and is still valid");
            for entry in index.apps.values() {
                // What the next release of the id would list stays bounded.
                assert!(entry.with_history().len() <= flatipfs_format::index::HISTORY);
            }
        }
    }
});
