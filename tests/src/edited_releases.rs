//! Releases whose Flatpak `metadata` is edited by hand: a fixture deploy
//! directory copied, its `metadata` rewritten, and published through the
//! publisher's daemon as a deploy directory, as a publisher (honest or not)
//! would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ctl;
use crate::fixtures::deploy_dir;
use crate::pair::Pair;
use crate::stack::run_ok;

/// A copy (in `into`) of the deploy directory of `reference` from the
/// fixture repository `repo` (`repo-v1`, `repo-v2`), its `metadata`
/// replaced by what `edit` makes of it.
pub fn edited_deploy_dir(
    pair: &Pair,
    repo: &str,
    reference: &str,
    into: &Path,
    edit: impl FnOnce(&str) -> String,
) -> PathBuf {
    let scratch = into.join("scratch");
    let original = deploy_dir(&pair.apps.join(repo), reference, &scratch).unwrap();
    let copy = into.join("deploy");
    run_ok(Command::new("cp").arg("-a").arg(&original).arg(&copy)).unwrap();
    let metadata = copy.join("metadata");
    let text = std::fs::read_to_string(&metadata).unwrap();
    std::fs::write(&metadata, edit(&text)).unwrap();
    copy
}

/// Publishes the deploy directory `dir` to the pair's remote `main` as
/// `version` and carries the index to the client; the release root CID.
pub fn publish_deploy_dir(pair: &Pair, dir: &Path, version: &str) -> String {
    let out = ctl::ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--version",
            version,
            dir.to_str().unwrap(),
        ],
    );
    pair.wait_until_client_resolves_index();
    out["release"].as_str().unwrap().to_string()
}

/// The test app's deploy directory from `repo` with `extra` appended to its
/// `metadata`, published as `version`; its release root CID.
pub fn publish_app_with(pair: &Pair, repo: &str, version: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let app_ref = pair.app_ref.clone();
    let deploy = edited_deploy_dir(pair, repo, &app_ref, dir.path(), |text| {
        format!("{text}\n{extra}")
    });
    publish_deploy_dir(pair, &deploy, version)
}
