//! Comparing trees and reading the mount table, for tests that check what
//! a mount shows against what was published.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mount options of `path` if something is mounted there.
pub fn mounted_options(path: &Path) -> Option<String> {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "--mountpoint"])
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Compares the mounted tree with the original, entry by entry.
pub fn assert_same_tree(original: &Path, mounted: &Path) {
    let mut count = 0;
    for entry in walk(original) {
        let rel = entry.strip_prefix(original).unwrap();
        let there = mounted.join(rel);
        let want = std::fs::symlink_metadata(&entry).unwrap();
        let got = std::fs::symlink_metadata(&there)
            .unwrap_or_else(|e| panic!("{}: {e}", there.display()));
        assert_eq!(got.file_type(), want.file_type(), "{}", rel.display());
        assert_eq!(
            got.mode() & 0o7777,
            want.mode() & 0o7777,
            "mode of {}",
            rel.display()
        );
        if want.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&there).unwrap(),
                std::fs::read_link(&entry).unwrap()
            );
        } else if want.is_file() {
            assert_eq!(
                std::fs::read(&there).unwrap(),
                std::fs::read(&entry).unwrap(),
                "{}",
                rel.display()
            );
        }
        count += 1;
    }
    assert!(count > 5, "compared only {count} entries");
}

pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}
