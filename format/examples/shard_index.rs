//! Writes a store index (a schema 1 document, read from the file given
//! first) in the sharded layout, as a publisher's daemon adds it, into the
//! directory given second: `index.json` and `shards/<prefix>.json`.
//! `scripts/bench-network.sh` uses it to make the index of a large remote.

use flatipfs_format::index::StoreIndex;
use flatipfs_format::index_shards::{shard, ROOT_NAME, SHARDS_DIR};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: shard_index INDEX.json OUTPUT-DIR".into());
    };
    let index: StoreIndex = serde_json::from_slice(&std::fs::read(input)?)?;
    index.validate(Default::default())?;
    let (root, shards) = shard(&index);
    let output = std::path::Path::new(&output);
    std::fs::create_dir_all(output.join(SHARDS_DIR))?;
    std::fs::write(output.join(ROOT_NAME), root)?;
    for document in shards {
        std::fs::write(
            output
                .join(SHARDS_DIR)
                .join(format!("{}.json", document.prefix)),
            document.bytes,
        )?;
    }
    Ok(())
}
