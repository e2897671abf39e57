//! Flatpak's `deploy` file: the GVariant `(ssasta{sv})` every deploy
//! directory carries (`../shared/reference/flatpak-installation.md` §2).
//!
//! flatipfs writes deploy-version 4, so that `flatpak list`, `flatpak info`
//! and libflatpak never try to load an ostree commit that does not exist.
//! The installed size is stored big-endian (Flatpak byte-swaps it before
//! serializing); everything else is little-endian GVariant normal form.

use std::collections::BTreeMap;

use zvariant::serialized::Context;
use zvariant::{Value, LE};

/// `FLATPAK_DEPLOY_VERSION_CURRENT` in Flatpak 1.14 (and still on main).
pub const DEPLOY_VERSION: i32 = 4;

/// What flatipfs puts in a `deploy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployData {
    /// The (disabled) origin remote.
    pub origin: String,
    /// 64 lowercase hex characters: the deploy directory's name.
    pub commit: String,
    pub installed_size: u64,
    /// Seconds since the epoch (the release's publish time).
    pub timestamp: u64,
    /// Apps: the runtime ref.
    pub runtime: Option<String>,
}

impl DeployData {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut metadata: BTreeMap<&str, Value<'_>> = BTreeMap::new();
        metadata.insert("deploy-version", Value::from(DEPLOY_VERSION));
        metadata.insert("timestamp", Value::from(self.timestamp));
        if let Some(runtime) = &self.runtime {
            metadata.insert("runtime", Value::from(runtime.as_str()));
        }
        let subpaths: Vec<String> = Vec::new();
        let body = (
            self.origin.as_str(),
            self.commit.as_str(),
            subpaths,
            // Flatpak applies GUINT64_TO_BE before serializing.
            self.installed_size.to_be(),
            metadata,
        );
        // zvariant 5 marks its GVariant format deprecated in favour of the
        // `zgvariant` crate (zvariant 6); move with the zbus 6 upgrade. The
        // golden-bytes test below guards the output.
        #[allow(deprecated)]
        let context = Context::new_gvariant(LE, 0);
        zvariant::to_bytes(context, &body)
            .expect("deploy data serializes")
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `deploy` file Flatpak 1.14.10 wrote when installing the test app.
    const WRITTEN_BY_FLATPAK: &[u8] =
        include_bytes!("../testdata/deploy-written-by-flatpak-1.14.10");

    #[test]
    fn encodes_byte_for_byte_what_flatpak_writes() {
        let data = DeployData {
            origin: "src".into(),
            commit: "e0bf5f802f107e87402768f09d96c2541f0cf6e0b4df90e4f8d1e4ae931a5eea".into(),
            installed_size: 0x4a000,
            timestamp: 0x6b07016a,
            runtime: Some("org.test.Platform/x86_64/master".into()),
        };
        assert_eq!(data.encode(), WRITTEN_BY_FLATPAK);
    }
}
