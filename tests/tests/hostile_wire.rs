//! Hostile encodings (issue 10): a release root built by the test whose
//! manifest names corrupt packs or deltas, or decoding bombs. Each is
//! refused (a typed error in the daemon's log, counted), the file comes as
//! plain blocks instead, and the app installs or updates and runs with the
//! right bytes.

use flatipfs_tests::ctl::{ok_json, run_hello};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::wire_releases::{
    add_on_publisher, app_with_files, cat_on_publisher, file_cid, manifest_on_publisher, publish,
    text, wire_record, zstd_frame,
};
use serde_json::{json, Value};

const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";
const BIG: &str = "files/lib/libbig.so.1.2";
const DATA: &str = "files/share/data.txt";
const MORE: &str = "files/share/more.txt";

fn number(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// A pair with the runtime published and version 1 of the app, three larger
/// files in it, published; the app's release root.
fn with_v1(pair: &Pair, dir: &std::path::Path) -> (String, Vec<(&'static str, Vec<u8>)>) {
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let files = vec![
        (BIG, text(30_000, 50, 0)),
        (DATA, text(10_000, 10, 0)),
        (MORE, text(12_000, 7, 0)),
    ];
    let v1 = app_with_files(pair, dir, &files);
    let out = publish(pair, &v1, "1", &[]);
    (out["release"].as_str().unwrap().to_string(), files)
}

fn assert_files(pair: &Pair, files: &[(&str, Vec<u8>)]) {
    let active = pair
        .client
        .installation()
        .join(&pair.app_ref)
        .join("active");
    for (path, data) in files {
        assert!(
            std::fs::read(active.join(path)).unwrap() == *data,
            "{path} differs from what was published"
        );
    }
    assert_eq!(
        run_hello(&pair.client),
        "Hello from org.test.Hello version 1"
    );
}

/// A pack of one piece per file of `pieces`: (path, blob CID, declared size).
fn pack_of(manifest: &Value, pieces: &[(&str, String, u64)]) -> Value {
    let size_of = |path: &str| {
        manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap()["size"]
            .as_u64()
            .unwrap()
    };
    Value::Array(
        pieces
            .iter()
            .map(|(path, cid, size)| {
                json!({"cid": cid, "size": size,
                       "slices": [{"path": path, "offset": 0, "length": size_of(path)}]})
            })
            .collect(),
    )
}

#[test]
fn a_tampered_pack_is_detected_and_the_install_uses_plain_blocks() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let scratch = tempfile::tempdir().unwrap();
    let (release, files) = with_v1(&pair, scratch.path());
    let manifest = manifest_on_publisher(&pair, &release);
    // A well-formed frame of the right size whose bytes are not the file's.
    let mut wrong = cat_on_publisher(&pair, &file_cid(&manifest, BIG));
    wrong[1000] ^= 1;
    let frame = zstd_frame(&wrong, true);
    let tampered = add_on_publisher(&pair, &frame);
    // And a corrupt frame: the honest piece with bytes flipped.
    let honest = &manifest["encodings"]["pack"][0];
    let mut corrupt = cat_on_publisher(&pair, honest["cid"].as_str().unwrap());
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    corrupt[middle + 1] ^= 0xff;
    let corrupt_cid = add_on_publisher(&pair, &corrupt);
    let handmade = pair.handmade_keeping_encodings(&release, |m| {
        let mut pieces = pack_of(m, &[(BIG, tampered.clone(), frame.len() as u64)]);
        let mut rest = honest.clone();
        rest["cid"] = corrupt_cid.clone().into();
        rest["slices"] = Value::Array(
            rest["slices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["path"] != BIG)
                .cloned()
                .collect(),
        );
        pieces.as_array_mut().unwrap().push(rest);
        m["encodings"]["pack"] = pieces;
    });
    pair.offer_release("org.test.Hello", &handmade);

    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_files(&pair, &files);
    let wire = wire_record(&pair.client, &handmade);
    assert!(number(&wire, "refused") >= 2, "{wire}");
    assert!(number(&wire, "plain") >= files[0].1.len() as u64, "{wire}");
    let log = pair.client.daemon_log();
    assert!(log.contains("decoded to CID"), "the mismatch is logged");
}

/// A small file (one raw block) decoded from a pack is checked by the
/// daemon's own hash of its bytes before Kubo stores anything: a piece that
/// decodes to other bytes is refused, and the file comes as plain blocks.
#[test]
fn a_small_file_tampered_in_the_pack_is_refused_by_its_hash() {
    const SMALL: &str = "files/share/small.txt";
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let scratch = tempfile::tempdir().unwrap();
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let files = vec![(SMALL, text(30, 7, 0))];
    let v1 = app_with_files(&pair, scratch.path(), &files);
    let release = publish(&pair, &v1, "1", &[])["release"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = manifest_on_publisher(&pair, &release);
    assert!(
        file_cid(&manifest, SMALL).starts_with("bafkrei"),
        "the small file is one raw block"
    );
    let mut wrong = files[0].1.clone();
    wrong[100] ^= 1;
    let frame = zstd_frame(&wrong, true);
    let tampered = add_on_publisher(&pair, &frame);
    let handmade = pair.handmade_keeping_encodings(&release, |m| {
        m["encodings"]["pack"] = pack_of(m, &[(SMALL, tampered.clone(), frame.len() as u64)]);
    });
    pair.offer_release("org.test.Hello", &handmade);

    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_files(&pair, &files);
    let wire = wire_record(&pair.client, &handmade);
    assert!(number(&wire, "pack") > 0, "the piece was fetched: {wire}");
    assert_eq!(number(&wire, "pack_files"), 0, "{wire}");
    assert!(number(&wire, "refused") >= 1, "{wire}");
    let log = pair.client.daemon_log();
    assert!(
        log.contains("bytes of another SHA-256 digest"),
        "the hash mismatch is logged"
    );
}

#[test]
fn a_tampered_delta_is_detected_and_the_update_uses_plain_blocks() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let scratch = tempfile::tempdir().unwrap();
    let (_, _) = with_v1(&pair, &scratch.path().join("v1"));
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    let files = vec![
        (BIG, text(30_000, 50, 2)),
        (DATA, text(10_000, 10, 2)),
        (MORE, text(12_000, 7, 0)),
    ];
    let v2 = app_with_files(&pair, &scratch.path().join("v2"), &files);
    let release = publish(&pair, &v2, "2", &[])["release"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = manifest_on_publisher(&pair, &release);
    let deltas = manifest["encodings"]["deltas"].as_array().unwrap().clone();
    assert_eq!(deltas.len(), 2, "{manifest}");
    // The delta of BIG replaced by a frame giving other bytes of its size.
    let mut wrong = files[0].1.clone();
    wrong[5] ^= 1;
    let frame = zstd_frame(&wrong, true);
    let tampered = add_on_publisher(&pair, &frame);
    let handmade = pair.handmade_keeping_encodings(&release, |m| {
        for delta in m["encodings"]["deltas"].as_array_mut().unwrap() {
            if delta["path"] == BIG {
                delta["cid"] = tampered.clone().into();
                delta["size"] = (frame.len() as u64).into();
            }
        }
    });
    pair.offer_release("org.test.Hello", &handmade);

    let updated = ok_json(&pair.client, &["update", "--json", "org.test.Hello"]);
    let bytes = &updated["bytes"];
    assert_eq!(number(bytes, "refused_decodings"), 1, "{updated}");
    assert_eq!(
        number(bytes, "delta_files"),
        1,
        "the honest delta: {updated}"
    );
    assert!(
        number(bytes, "plain") >= files[0].1.len() as u64,
        "{updated}"
    );
    assert_files(&pair, &files);
    assert!(pair.client.daemon_log().contains("decoded to CID"));
}

#[test]
fn decoding_bombs_are_refused_before_memory_is_spent_and_plain_blocks_used() {
    // Stricter than the format's bounds, so that the manifest passes and
    // the client's own limits refuse.
    let pair = Pair::up(&format!(
        "{NO_AUTOMATIC_UPDATES}\n[limits]\nmax_window_log = 20\nmax_encoding_ratio = 1\n"
    ));
    let scratch = tempfile::tempdir().unwrap();
    let (release, files) = with_v1(&pair, scratch.path());
    // A frame header asking for a 2^41 byte window.
    let window_bomb = add_on_publisher(
        &pair,
        &[0x28, 0xb5, 0x2f, 0xfd, 0x00, 31 << 3, 0, 0, 0, 0, 0, 0],
    );
    // A frame that does not declare its size and produces more than DATA.
    let mut longer = files[1].1.clone();
    longer.extend(vec![b'x'; 100_000]);
    let long_frame = zstd_frame(&longer, false);
    let long_bomb = add_on_publisher(&pair, &long_frame);
    // An encoding 1.5 times the file it claims to produce (within the
    // format's 2, over this client's 1): refused before it is fetched.
    let heavy_size = files[2].1.len() as u64 * 3 / 2;
    let heavy = add_on_publisher(&pair, &vec![7u8; heavy_size as usize]);
    let handmade = pair.handmade_keeping_encodings(&release, |m| {
        m["encodings"]["pack"] = pack_of(
            m,
            &[
                (BIG, window_bomb.clone(), 12),
                (DATA, long_bomb.clone(), long_frame.len() as u64),
                (MORE, heavy.clone(), heavy_size),
            ],
        );
    });
    pair.offer_release("org.test.Hello", &handmade);

    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_files(&pair, &files);
    let wire = wire_record(&pair.client, &handmade);
    assert_eq!(number(&wire, "refused"), 3, "{wire}");
    assert_eq!(number(&wire, "pack_files"), 0, "{wire}");
    // The heavy encoding was never fetched: only the two small bombs were.
    assert_eq!(
        number(&wire, "pack"),
        12 + long_frame.len() as u64,
        "{wire}"
    );
    let log = pair.client.daemon_log();
    for what in [
        "window, over the limit of 2^20",
        "produces more than the manifest's",
        "over 1 times",
    ] {
        assert!(log.contains(what), "no {what:?} in the log");
    }
}

/// The directory CAR (every directory node of `deploy/` in one file, read
/// by the binding check instead of one round trip per directory): an
/// honest one is used whole; in one whose block is tampered, that block is
/// refused by its hash and the binding check fetches it, so the install
/// goes through with the right files.
#[test]
fn a_tampered_directory_car_block_is_refused_and_the_release_still_binds() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let scratch = tempfile::tempdir().unwrap();
    let (release, files) = with_v1(&pair, scratch.path());
    let manifest = manifest_on_publisher(&pair, &release);
    let directories = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "dir")
        .map(|e| e["cid"].as_str().unwrap())
        .chain([manifest["deploy"].as_str().unwrap()])
        .collect::<std::collections::HashSet<_>>()
        .len();
    let car = &manifest["encodings"]["directories"];
    let honest = cat_on_publisher(&pair, car["cid"].as_str().unwrap());
    assert_eq!(honest.len() as u64, number(car, "size"), "{car}");

    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_files(&pair, &files);
    let used = format!("{release}: {directories} directory blocks kept, 0 refused");
    let log = pair.client.daemon_log();
    assert!(
        log.contains(&used),
        "no {used:?} in the daemon's log:\n{log}"
    );
    ok_json(&pair.client, &["uninstall", "--json", "org.test.Hello"]);

    // The last byte of a CAR is the last byte of its last block.
    let mut tampered = honest.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let tampered_cid = add_on_publisher(&pair, &tampered);
    let handmade = pair.handmade_keeping_encodings(&release, |m| {
        m["encodings"]["directories"] = json!({"cid": tampered_cid, "size": tampered.len()});
    });
    pair.offer_release("org.test.Hello", &handmade);
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_files(&pair, &files);
    let kept = format!(
        "{handmade}: {} directory blocks kept, 1 refused",
        directories - 1
    );
    let log = pair.client.daemon_log();
    assert!(
        log.contains(&kept),
        "no {kept:?} in the daemon's log:\n{log}"
    );
}
