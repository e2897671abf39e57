//! A publisher and a client: two stacks, each with its own system bus,
//! polkitd, Kubo node and flatipfsd, on a private IPFS network of their own
//! ([`crate::network`]) whose bootstrap node is a third stack's only node.
//! Neither node knows the other: the client's node finds the publisher's
//! store index record and its providers through routing, and every block it
//! installs travels between them. After each publication the harness waits
//! until the client's node resolves the new record
//! ([`Pair::wait_until_client_resolves_index`]).

use std::path::PathBuf;

use crate::ctl::{self, create_remote, publish_release};
use crate::fixtures::{self, hello_ref};
use crate::{StackOptions, TestStack};

/// The two stacks and the remote that links them.
pub struct Pair {
    pub publisher: TestStack,
    pub client: TestStack,
    /// The store index's IPNS name (`k51…`).
    pub ipns: String,
    /// The built test apps (`fixtures::test_apps`).
    pub apps: PathBuf,
    /// `app/org.test.Hello/ARCH/master`.
    pub app_ref: String,
    /// `runtime/org.test.Platform/ARCH/master`.
    pub runtime_ref: String,
    /// The network's bootstrap node (a stack of one Kubo node, nothing
    /// else); dropped last.
    pub network: TestStack,
}

impl Pair {
    /// Starts both stacks (the client's daemon gets `client_config` added
    /// to its configuration), creates remote `main` on the publisher and
    /// trusts it on the client.
    pub fn up(client_config: &str) -> Pair {
        Pair::start("", client_config, false)
    }

    /// Like [`Pair::up`], the publisher's daemon also configured with
    /// `publisher_config`.
    pub fn up_configured(publisher_config: &str, client_config: &str) -> Pair {
        Pair::start(publisher_config, client_config, false)
    }

    /// Like [`Pair::up`], the client's daemon running its own embedded
    /// Kubo node (the client's node 1).
    pub fn up_embedded(client_config: &str) -> Pair {
        Pair::start("", client_config, true)
    }

    fn start(publisher_config: &str, client_config: &str, embedded: bool) -> Pair {
        let apps = fixtures::test_apps().unwrap();
        let app_ref = hello_ref(&apps).unwrap();
        let runtime_ref = app_ref.replace("app/org.test.Hello", "runtime/org.test.Platform");
        let network = TestStack::up(&StackOptions {
            kubo_nodes: 1,
            daemon: false,
            network_only: true,
            ..Default::default()
        })
        .unwrap();
        let bootstrap = vec![network.kubo_node(1).unwrap().address.clone()];
        let publisher = TestStack::up(&StackOptions {
            kubo_nodes: 1,
            bootstrap: bootstrap.clone(),
            extra_config: publisher_config.to_string(),
            ..Default::default()
        })
        .unwrap();
        let client = TestStack::up(&StackOptions {
            kubo_nodes: if embedded { 0 } else { 1 },
            embedded_kubo: embedded,
            extra_config: client_config.to_string(),
            test_polkit_rules: true,
            bootstrap,
            ..Default::default()
        })
        .unwrap();
        let ipns = create_remote(&publisher, "main");
        let address = format!("/ipns/{ipns}");
        ctl::ok_json(&client, &["remote", "add", "main", &address, "--json"]);
        Pair {
            publisher,
            client,
            ipns,
            apps,
            app_ref,
            runtime_ref,
            network,
        }
    }

    /// Publishes `reference` from the fixture repository `repo` (`repo-v1`,
    /// `repo-v2`) and waits until the client's node resolves the new store
    /// index; returns the release root.
    pub fn publish(&self, repo: &str, reference: &str) -> String {
        let release = publish_release(&self.publisher, &self.apps.join(repo), reference);
        self.wait_until_client_resolves_index();
        release
    }

    /// Publishes the app from the fixture repository `repo` as `version`
    /// (the same content can be published again as a newer release).
    pub fn publish_version(&self, repo: &str, version: &str) -> String {
        let repo = self.apps.join(repo);
        let out = ctl::ok_json(
            &self.publisher,
            &[
                "publish",
                "--json",
                "--remote",
                "main",
                "--version",
                version,
                "--repo",
                repo.to_str().unwrap(),
                &self.app_ref,
            ],
        );
        self.wait_until_client_resolves_index();
        out["release"].as_str().unwrap().to_string()
    }

    /// Publishes the runtime and the app from `repo-v1`; returns the app's release.
    pub fn publish_v1(&self) -> String {
        self.publish("repo-v1", &self.runtime_ref.clone());
        self.publish("repo-v1", &self.app_ref.clone())
    }

    /// Makes one block of `path` (relative to the release root) unavailable
    /// on the publisher: the release is unpinned there and the block
    /// removed, so a client cannot finish fetching until [`Pair::give_back`].
    /// The release's encodings (pack, deltas) are taken away too, or a
    /// client would get the file through them.
    pub fn withhold(&self, release: &str, path: &str) -> Withheld {
        let node = &self.publisher;
        let file = node
            .ipfs(1, &["resolve", &format!("/ipfs/{release}/{path}")])
            .unwrap()
            .trim()
            .trim_start_matches("/ipfs/")
            .to_string();
        let refs = node.ipfs(1, &["refs", "-r", &file]).unwrap();
        let block = refs.lines().next().unwrap_or(&file).trim().to_string();
        let encodings = crate::wire_releases::withhold_encodings(self, release);
        let data = node.ipfs_bytes(1, &["block", "get", &block]).unwrap();
        node.ipfs(1, &["pin", "rm", release]).unwrap();
        node.ipfs(1, &["block", "rm", &block]).unwrap();
        Withheld {
            release: release.to_string(),
            block,
            data,
            encodings,
        }
    }

    /// Puts a withheld block back on the publisher (and pins its release again).
    pub fn give_back(&self, withheld: &Withheld) {
        let node = &self.publisher;
        let file = node.dir.join("withheld-block");
        std::fs::write(&file, &withheld.data).unwrap();
        let codec = if withheld.block.starts_with("bafk") {
            "raw"
        } else {
            "dag-pb"
        };
        let put = node
            .ipfs(
                1,
                &["block", "put", "--cid-codec", codec, file.to_str().unwrap()],
            )
            .unwrap();
        assert_eq!(
            put.trim(),
            withheld.block,
            "the block came back as another CID"
        );
        node.ipfs(1, &["pin", "add", &withheld.release]).unwrap();
        crate::wire_releases::give_back_encodings(self, &withheld.encodings);
    }

    /// A hand-made release root on the publisher: `release`'s `deploy/`
    /// with its manifest changed by `edit`; pinned there. Returns its CID.
    /// The honest release's encodings (pack, deltas) are dropped first (a
    /// schema 1 manifest): an edit of the entries would contradict them;
    /// see [`Pair::handmade_keeping_encodings`].
    pub fn handmade(&self, release: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        self.handmade_keeping_encodings(release, |m| {
            if let Some(fields) = m.as_object_mut() {
                fields.remove("encodings");
            }
            m["schema"] = 1.into();
            edit(m)
        })
    }

    /// Like [`Pair::handmade`], the manifest's encodings kept for `edit`.
    pub fn handmade_keeping_encodings(
        &self,
        release: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> String {
        let node = &self.publisher;
        let text = node
            .ipfs(1, &["cat", &format!("/ipfs/{release}/manifest")])
            .unwrap();
        let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        edit(&mut manifest);
        let file = node.dir.join("handmade-manifest");
        std::fs::write(&file, serde_json::to_vec(&manifest).unwrap()).unwrap();
        let manifest_cid = node
            .ipfs(1, &["add", "-Q", "--cid-version=1", file.to_str().unwrap()])
            .unwrap();
        let dir = format!("/handmade-{}", manifest_cid.trim());
        node.ipfs(1, &["files", "mkdir", "-p", "--cid-version=1", &dir])
            .unwrap();
        node.ipfs(
            1,
            &[
                "files",
                "cp",
                &format!("/ipfs/{release}/deploy"),
                &format!("{dir}/deploy"),
            ],
        )
        .unwrap();
        node.ipfs(
            1,
            &[
                "files",
                "cp",
                &format!("/ipfs/{}", manifest_cid.trim()),
                &format!("{dir}/manifest"),
            ],
        )
        .unwrap();
        let root = node
            .ipfs(1, &["files", "stat", "--hash", &dir])
            .unwrap()
            .trim()
            .to_string();
        node.ipfs(1, &["pin", "add", &root]).unwrap();
        root
    }

    /// Stops the publisher's Kubo node (its daemon stays).
    pub fn stop_publisher_node(&self) {
        self.publisher.stop_kubo(1).unwrap();
    }

    /// Starts the publisher's Kubo node again and waits until its daemon
    /// can use it and the network has healed: the client's node is
    /// connected to it again (the restarted node finds it through the DHT;
    /// nothing connects them by hand).
    pub fn start_publisher_node(&self) {
        self.publisher.start_kubo(1).unwrap();
        self.publisher.wait_kubo_usable().unwrap();
        let id = crate::network::peer_id(&self.publisher.kubo_node(1).unwrap().repo).unwrap();
        let mut connected = || {
            Ok(self
                .client
                .ipfs(1, &["swarm", "peers"])?
                .lines()
                .any(|p| p.trim().ends_with(&id)))
        };
        crate::stack::wait_for(
            "the client's node to reconnect to the restarted publisher through routing",
            crate::network::RESOLVE_LIMIT,
            &mut connected,
        )
        .unwrap();
    }

    /// Waits (bounded) until the client's node resolves remote `main`'s
    /// store index, through routing, to what the publisher published last:
    /// what the client's daemon will then see.
    pub fn wait_until_client_resolves_index(&self) {
        self.wait_until_client_resolves(&self.ipns);
    }

    /// Like [`Pair::wait_until_client_resolves_index`], for any IPNS name
    /// the publisher's node publishes.
    pub fn wait_until_client_resolves(&self, name: &str) {
        crate::network::wait_until_resolved(&self.publisher, 1, &self.client, 1, name).unwrap();
    }
}

/// A block taken away from the publisher by [`Pair::withhold`].
pub struct Withheld {
    pub release: String,
    pub block: String,
    data: Vec<u8>,
    encodings: crate::wire_releases::WithheldEncodings,
}
