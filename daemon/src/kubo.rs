//! Client of Kubo's RPC API (`POST /api/v0/<command>`).
//!
//! Owns the address formats Kubo uses for its API, the HTTP calls and the
//! version gate (flatipfsd needs Kubo 0.42 or newer). Knows nothing of D-Bus.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Blocks up to this many bytes are inlined into their CID (identity
/// multihash). Besides saving a round trip per tiny file, it is what makes
/// empty files work at all: Kubo's bitswap does not deliver the empty raw
/// block to another node (measured with 0.43.1), and every Flatpak tree has
/// an empty `files/.ref`.
pub const INLINE_LIMIT: &str = "32";

/// The deadline of calls whose duration grows with the content (reads,
/// locality walks) and that their callers bound more tightly where it
/// matters.
const LONG_CALL: Duration = Duration::from_secs(3600);

/// The longest unix socket path the kernel accepts (`sun_path` is 108
/// bytes, one of them the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The oldest Kubo flatipfsd works with (`../shared/design.md`, "Kubo usage").
pub const MIN_VERSION: (u64, u64) = (0, 42);

/// Failures talking to Kubo.
#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    #[error("invalid Kubo API address {0:?}: expected a multiaddr like /ip4/127.0.0.1/tcp/5001 or /unix/run/kubo.sock, an http:// URL or unix:/run/kubo.sock")]
    BadAddress(String),
    #[error("the unix socket path {path:?} is {len} bytes long; the kernel takes at most {} (choose a shorter state_directory or kubo.api)", MAX_SOCKET_PATH)]
    SocketPathTooLong { path: String, len: usize },
    #[error("Kubo API at {api} is not reachable: {source}")]
    Unreachable {
        api: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Kubo API at {api} answered {command} with HTTP {status}: {message}")]
    Rpc {
        api: String,
        command: String,
        status: u16,
        message: String,
    },
    #[error("Kubo API at {api} sent an unexpected reply to {command}: {source}")]
    BadReply {
        api: String,
        command: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Kubo API at {api} sent a reply to {command} that cannot be read: {message}")]
    Garbled {
        api: String,
        command: String,
        message: String,
    },
    #[error("no progress {what} for {after:?}")]
    Stalled { what: String, after: Duration },
    #[error("Kubo is not usable: {0}")]
    NotUsable(String),
    #[error("Kubo {found} is too old: flatipfsd needs Kubo {}.{} or newer", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { found: String },
    #[error("Kubo reported a version flatipfsd cannot read: {0:?}")]
    UnknownVersion(String),
}

/// One Kubo node's RPC API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash (`http://localhost` over a
    /// unix socket).
    base: String,
    /// The address as configured, for messages.
    address: String,
}

/// Reply of `version`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
}

/// A key in Kubo's keystore (`key/gen`, `key/list`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Key {
    pub name: String,
    /// The IPNS name (`k51…`).
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Keys {
    keys: Vec<Key>,
}

/// One line of `add` output: an added entry (or, with progress, a counter).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddLine {
    pub name: String,
    pub hash: Option<String>,
    pub bytes: Option<u64>,
}

/// What `add` is told to do: the release format's import profile.
#[derive(Debug, Clone, Copy)]
pub struct AddOptions {
    pub pin: bool,
}

/// Opens a file to upload, when the upload reaches it (so that only one
/// file is open at a time); the caller decides how it is opened safely.
pub type OpenFile = Box<dyn FnOnce() -> std::io::Result<std::fs::File> + Send>;

/// One part of a multipart `add` of a tree.
pub enum AddPart {
    Directory {
        name: String,
    },
    /// `size` bytes of the file `open` returns (never more).
    File {
        name: String,
        open: OpenFile,
        size: u64,
    },
    Symlink {
        name: String,
        target: String,
    },
    Bytes {
        name: String,
        data: Vec<u8>,
    },
}

/// Reply of `files/stat?with-local=true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Locality {
    pub cumulative_size: u64,
    #[serde(default)]
    pub size_local: u64,
    #[serde(default)]
    pub local: bool,
}

/// One child of a UnixFS directory as `ls` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Link {
    pub name: String,
    pub hash: String,
    #[serde(default)]
    pub size: u64,
    /// UnixFS type: 0 not known (not resolved), 1 directory, 2 file,
    /// 4 symlink, 5 sharded directory.
    #[serde(rename = "Type", default)]
    pub kind: i32,
}

/// Summary of `dag/stat` over several roots.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DagStat {
    pub total_size: u64,
    /// Absent when only one root is given.
    #[serde(default)]
    pub shared_size: u64,
    pub dag_stats: Vec<DagStatEntry>,
}

/// One root of a `dag/stat` reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DagStatEntry {
    pub size: u64,
    pub num_blocks: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Hash {
    hash: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Peers {
    peers: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RpcError {
    message: String,
}

impl Client {
    /// A client for the API at `address` (multiaddr or URL); every call is
    /// bounded by `timeout`.
    pub fn new(address: &str, timeout: Duration) -> Result<Self, KuboError> {
        let mut builder = reqwest::Client::builder().timeout(timeout).no_proxy();
        let base = match api_endpoint(address)? {
            Endpoint::Http(base) => base,
            Endpoint::Unix(path) => {
                builder = builder.unix_socket(path);
                "http://localhost".to_string()
            }
        };
        let http = builder.build().map_err(|source| KuboError::Unreachable {
            api: address.to_string(),
            source,
        })?;
        Ok(Client {
            http,
            base,
            address: address.to_string(),
        })
    }

    /// `version`.
    pub async fn version(&self) -> Result<Version, KuboError> {
        self.call("version", &[]).await
    }

    /// Number of connected peers (`swarm/peers`).
    pub async fn peer_count(&self) -> Result<u32, KuboError> {
        let peers: Peers = self.call("swarm/peers", &[]).await?;
        Ok(peers.peers.map_or(0, |p| p.len() as u32))
    }

    /// Generates an ed25519 key named `name`.
    pub async fn key_gen(&self, name: &str) -> Result<Key, KuboError> {
        self.call("key/gen", &[("arg", name), ("type", "ed25519")])
            .await
    }

    /// Every key in the keystore.
    pub async fn key_list(&self) -> Result<Vec<Key>, KuboError> {
        let keys: Keys = self.call("key/list", &[("l", "true")]).await?;
        Ok(keys.keys)
    }

    /// Adds `parts` (a tree, parents before children) with the release
    /// import profile: CIDv1, sha2-256, buzhash, raw leaves. Calls
    /// `progress(bytes)` with the bytes read so far. Returns one line per
    /// added entry, the top-level entry last.
    pub async fn add(
        &self,
        parts: Vec<AddPart>,
        options: AddOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<AddLine>, KuboError> {
        use reqwest::multipart::{Form, Part};
        let mut form = Form::new();
        for part in parts {
            let (name, part) = match part {
                AddPart::Directory { name } => (
                    name,
                    Part::bytes(Vec::new()).mime_str("application/x-directory"),
                ),
                AddPart::Symlink { name, target } => {
                    (name, Part::text(target).mime_str("application/symlink"))
                }
                AddPart::Bytes { name, data } => {
                    (name, Part::bytes(data).mime_str("application/octet-stream"))
                }
                AddPart::File { name, open, size } => {
                    use futures_util::TryStreamExt;
                    use tokio::io::AsyncReadExt;
                    let read = futures_util::stream::once(async move {
                        let file = tokio::fs::File::from_std(open()?);
                        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::new(file.take(size)))
                    })
                    .try_flatten();
                    (
                        name,
                        Part::stream_with_length(reqwest::Body::wrap_stream(read), size)
                            .mime_str("application/octet-stream"),
                    )
                }
            };
            let part = part
                .expect("static mime types parse")
                .file_name(urlencoding::encode(&name).into_owned());
            form = form.part("file", part);
        }
        let pin = if options.pin { "true" } else { "false" };
        let args = [
            ("recursive", "true"),
            ("cid-version", "1"),
            ("hash", "sha2-256"),
            ("chunker", "buzhash"),
            ("raw-leaves", "true"),
            ("inline", "true"),
            ("inline-limit", INLINE_LIMIT),
            ("pin", pin),
            ("progress", "true"),
            ("fast-provide-root", "false"),
        ];
        let response = self.send("add", &args, Some(form)).await?;
        let mut lines = Vec::new();
        // Progress lines carry the bytes read so far of one named entry.
        let mut per_entry: std::collections::HashMap<String, u64> = Default::default();
        let mut total = 0u64;
        let mut buffer = Vec::new();
        let mut response = response;
        while let Some(chunk) = self.next_chunk(&mut response, "add").await? {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let parsed: AddLine =
                    serde_json::from_slice(&line).map_err(|e| self.garbled("add", e))?;
                if parsed.hash.is_some() {
                    lines.push(parsed);
                } else if let Some(bytes) = parsed.bytes {
                    let seen = per_entry.entry(parsed.name).or_default();
                    total += bytes.saturating_sub(*seen);
                    *seen = bytes.max(*seen);
                    progress(total);
                }
            }
        }
        Ok(lines)
    }

    /// The CIDs of the local files `files` (path, size) under the release
    /// import profile, in one call (each file a top-level part, opened and
    /// streamed when the upload reaches it): the CID of each, in order,
    /// `None` for one Kubo gave no line for. With `nocopy`, Kubo also
    /// records the files in its filestore (their raw leaves are then read
    /// from the files, not copied; each must lie below the repository's
    /// parent directory and the node's user must be able to read it);
    /// without, nothing is stored (`only-hash`).
    pub async fn add_local_files(
        &self,
        files: &[(std::path::PathBuf, u64)],
        nocopy: bool,
    ) -> Result<Vec<Option<String>>, KuboError> {
        use reqwest::multipart::{Form, Part};
        if files.is_empty() {
            // Kubo refuses an `add` without parts.
            return Ok(Vec::new());
        }
        let mut form = Form::new();
        for (i, (path, size)) in files.iter().enumerate() {
            let opened = path.clone();
            let read = futures_util::stream::once(async move {
                let file = tokio::fs::File::open(&opened).await?;
                Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::new(file))
            });
            let body = reqwest::Body::wrap_stream(futures_util::TryStreamExt::try_flatten(read));
            let mut headers = reqwest::header::HeaderMap::new();
            let abspath = path.to_string_lossy().into_owned();
            headers.insert(
                "Abspath-Encoded",
                reqwest::header::HeaderValue::from_str(&urlencoding::encode(&abspath))
                    .map_err(|e| KuboError::NotUsable(format!("path {abspath:?}: {e}")))?,
            );
            let part = Part::stream_with_length(body, *size)
                .mime_str("application/octet-stream")
                .expect("static mime types parse")
                .file_name(i.to_string())
                .headers(headers);
            form = form.part("file", part);
        }
        let (nocopy, only_hash) = if nocopy {
            ("true", "false")
        } else {
            ("false", "true")
        };
        let args = [
            ("cid-version", "1"),
            ("hash", "sha2-256"),
            ("chunker", "buzhash"),
            ("raw-leaves", "true"),
            ("inline", "true"),
            ("inline-limit", INLINE_LIMIT),
            ("pin", "false"),
            ("nocopy", nocopy),
            ("only-hash", only_hash),
            ("fast-provide-root", "false"),
        ];
        let lines: Vec<AddLine> = self.json_lines("add", &args, Some(form)).await?;
        let mut out = vec![None; files.len()];
        for line in lines {
            if let (Ok(i), Some(hash)) = (line.name.parse::<usize>(), line.hash) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(hash);
                }
            }
        }
        Ok(out)
    }

    /// Every block below `cid` (`refs -r --unique`), without `cid` itself,
    /// from local blocks only (a missing block is an error, not a fetch).
    pub async fn refs_recursive(&self, cid: &str) -> Result<Vec<String>, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Ref {
            #[serde(rename = "Ref")]
            reference: String,
            #[serde(default)]
            err: String,
        }
        let refs: Vec<Ref> = self
            .json_lines(
                "refs",
                &[
                    ("arg", cid),
                    ("recursive", "true"),
                    ("unique", "true"),
                    ("offline", "true"),
                ],
                None,
            )
            .await?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            if !r.err.is_empty() {
                return Err(KuboError::Garbled {
                    api: self.address.clone(),
                    command: "refs".into(),
                    message: r.err,
                });
            }
            out.push(r.reference);
        }
        Ok(out)
    }

    /// `dag/import` of `car` (a CAR v1 stream, [`crate::car::v1`]) without
    /// pinning its roots: Kubo stores its blocks in one batch. Returns how
    /// many blocks Kubo read from it.
    pub async fn dag_import(&self, car: Vec<u8>) -> Result<u64, KuboError> {
        use reqwest::multipart::{Form, Part};
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Line {
            stats: Option<Stats>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Stats {
            block_count: u64,
        }
        let part = Part::bytes(car)
            .mime_str("application/vnd.ipld.car")
            .expect("static mime types parse")
            .file_name("blocks.car");
        let form = Form::new().part("file", part);
        let args = [("pin-roots", "false"), ("stats", "true")];
        let lines: Vec<Line> = self.json_lines("dag/import", &args, Some(form)).await?;
        Ok(lines
            .into_iter()
            .filter_map(|l| l.stats)
            .map(|s| s.block_count)
            .sum())
    }

    /// `block/rm` of `cids` (from the blockstore *and* the filestore);
    /// returns how many were removed. A block that is pinned or missing is
    /// left, not an error.
    pub async fn block_rm(&self, cids: &[String]) -> Result<usize, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Removed {
            #[serde(default)]
            error: String,
        }
        let mut removed = 0;
        // As many CIDs per call as a request URL holds (the `http` crate
        // takes at most 64 KiB; a CID argument is about 66 bytes): Kubo
        // walks every pin's DAG once per call.
        for chunk in cids.chunks(768) {
            let mut args: Vec<(&str, &str)> = chunk.iter().map(|c| ("arg", c.as_str())).collect();
            args.push(("force", "true"));
            let lines: Vec<Removed> = self.json_lines("block/rm", &args, None).await?;
            removed += lines.iter().filter(|l| l.error.is_empty()).count();
        }
        Ok(removed)
    }

    /// Calls `command` and decodes its reply, one JSON value per line.
    async fn json_lines<T: DeserializeOwned>(
        &self,
        command: &str,
        args: &[(&str, &str)],
        form: Option<reqwest::multipart::Form>,
    ) -> Result<Vec<T>, KuboError> {
        let mut response = self.send_timed(command, args, form, LONG_CALL).await?;
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut response, command).await? {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                out.push(serde_json::from_slice(&line).map_err(|e| self.garbled(command, e))?);
            }
        }
        if !buffer.iter().all(u8::is_ascii_whitespace) {
            out.push(serde_json::from_slice(&buffer).map_err(|e| self.garbled(command, e))?);
        }
        Ok(out)
    }

    /// `files/mkdir` with CIDv1 directories.
    pub async fn files_mkdir(&self, path: &str) -> Result<(), KuboError> {
        self.call_unit(
            "files/mkdir",
            &[("arg", path), ("parents", "true"), ("cid-version", "1")],
        )
        .await
    }

    /// `files/cp SRC DST` (lazy: fetches only the root node).
    pub async fn files_cp(&self, src: &str, dst: &str) -> Result<(), KuboError> {
        self.call_unit(
            "files/cp",
            &[("arg", src), ("arg", dst), ("parents", "true")],
        )
        .await
    }

    /// The CID of an MFS path.
    pub async fn files_hash(&self, path: &str) -> Result<String, KuboError> {
        let hash: Hash = self
            .call("files/stat", &[("arg", path), ("hash", "true")])
            .await?;
        Ok(hash.hash)
    }

    /// `files/rm -r`; a missing path is not an error.
    pub async fn files_rm(&self, path: &str) -> Result<(), KuboError> {
        match self
            .call_unit(
                "files/rm",
                &[("arg", path), ("recursive", "true"), ("force", "true")],
            )
            .await
        {
            Err(KuboError::Rpc { message, .. }) if message.contains("does not exist") => Ok(()),
            other => other,
        }
    }

    /// Pins `cid` recursively under `name`.
    pub async fn pin_add(&self, cid: &str, name: &str) -> Result<(), KuboError> {
        let path = format!("/ipfs/{cid}");
        self.call_unit("pin/add", &[("arg", &path), ("name", name)])
            .await
    }

    /// Removes the recursive pin of `cid`; a CID not pinned is not an error.
    pub async fn pin_rm(&self, cid: &str) -> Result<(), KuboError> {
        let path = format!("/ipfs/{cid}");
        match self.call_unit("pin/rm", &[("arg", &path)]).await {
            Err(KuboError::Rpc { message, .. }) if message.contains("not pinned") => Ok(()),
            other => other,
        }
    }

    /// Whether `cid` is pinned recursively (by anyone).
    pub async fn is_pinned(&self, cid: &str) -> Result<bool, KuboError> {
        let path = format!("/ipfs/{cid}");
        match self
            .call_unit("pin/ls", &[("arg", &path), ("type", "recursive")])
            .await
        {
            Ok(()) => Ok(true),
            Err(KuboError::Rpc { message, .. }) if message.contains("not pinned") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Recursive pins whose name starts with `prefix`: `(cid, name)`.
    pub async fn pins_named(&self, prefix: &str) -> Result<Vec<(String, String)>, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Pin {
            #[serde(default)]
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Pins {
            #[serde(default)]
            keys: std::collections::BTreeMap<String, Pin>,
        }
        let pins: Pins = self
            .call("pin/ls", &[("type", "recursive"), ("names", "true")])
            .await?;
        Ok(pins
            .keys
            .into_iter()
            .filter(|(_, p)| p.name.starts_with(prefix))
            .map(|(cid, p)| (cid, p.name))
            .collect())
    }

    /// Names in an MFS directory; a missing directory is empty.
    pub async fn files_ls(&self, path: &str) -> Result<Vec<String>, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Listing {
            entries: Option<Vec<Entry>>,
        }
        match self.call::<Listing>("files/ls", &[("arg", path)]).await {
            Ok(listing) => Ok(listing
                .entries
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.name)
                .collect()),
            Err(KuboError::Rpc { message, .. }) if message.contains("does not exist") => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Pins `cid` recursively under `name`, fetching what is missing, and
    /// reports `(blocks, bytes)` as Kubo walks the DAG (every 500 ms).
    /// Fails with [`KuboError::Stalled`] when the block count has not grown
    /// for `stall`.
    pub async fn pin_add_progress(
        &self,
        cid: &str,
        name: &str,
        stall: Duration,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), KuboError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Line {
            progress: u64,
            bytes: u64,
            pins: Option<Vec<String>>,
        }
        let path = format!("/ipfs/{cid}");
        let args = [("arg", path.as_str()), ("name", name), ("progress", "true")];
        // No deadline for the whole reply: the stall rule below bounds it.
        let mut response = self
            .send_timed("pin/add", &args, None, Duration::from_secs(7 * 24 * 3600))
            .await?;
        let mut buffer = Vec::new();
        let mut blocks = 0;
        let mut last_growth = tokio::time::Instant::now();
        loop {
            let deadline = last_growth + stall;
            let chunk =
                tokio::time::timeout_at(deadline, self.next_chunk(&mut response, "pin/add"))
                    .await
                    .map_err(|_| KuboError::Stalled {
                        what: format!("pinning {cid}"),
                        after: stall,
                    })??;
            let Some(chunk) = chunk else {
                return Err(KuboError::Garbled {
                    api: self.address.clone(),
                    command: "pin/add".into(),
                    message: "the reply ended before the pin was confirmed".into(),
                });
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Ok(error) = serde_json::from_slice::<RpcError>(&line) {
                    return Err(KuboError::Rpc {
                        api: self.address.clone(),
                        command: "pin/add".into(),
                        status: 200,
                        message: error.message,
                    });
                }
                let line: Line =
                    serde_json::from_slice(&line).map_err(|e| self.garbled("pin/add", e))?;
                if line.pins.is_some() {
                    return Ok(());
                }
                if line.progress > blocks {
                    blocks = line.progress;
                    last_growth = tokio::time::Instant::now();
                }
                progress(line.progress, line.bytes);
            }
        }
    }

    /// Size and locality of an MFS path (`files/stat?with-local=true`):
    /// walks the DAG with an offline block service, never fetching.
    pub async fn files_locality(&self, path: &str) -> Result<Locality, KuboError> {
        // The walk visits every block of the release: long for big ones.
        let args = [("arg", path), ("with-local", "true")];
        let response = self
            .send_timed("files/stat", &args, None, LONG_CALL)
            .await?;
        response.json().await.map_err(|source| KuboError::BadReply {
            api: self.address.clone(),
            command: "files/stat".into(),
            source,
        })
    }

    /// Resolves `/ipns/NAME` to the path it names, asking the network
    /// (`nocache`), within `timeout`.
    pub async fn name_resolve(&self, name: &str, timeout: Duration) -> Result<String, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Resolved {
            path: String,
        }
        let arg = format!("/ipns/{name}");
        let kubo_timeout = format!("{}ms", timeout.as_millis());
        let args = [
            ("arg", arg.as_str()),
            ("nocache", "true"),
            ("dht-timeout", kubo_timeout.as_str()),
            ("timeout", kubo_timeout.as_str()),
        ];
        let deadline = timeout + Duration::from_secs(2);
        let call = async {
            let response = self
                .send_timed("name/resolve", &args, None, deadline)
                .await?;
            response
                .json::<Resolved>()
                .await
                .map_err(|source| KuboError::BadReply {
                    api: self.address.clone(),
                    command: "name/resolve".into(),
                    source,
                })
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(result) => result.map(|r| r.path),
            Err(_) => Err(KuboError::Stalled {
                what: format!("resolving /ipns/{name}"),
                after: timeout,
            }),
        }
    }

    /// Removes blocks neither pinned nor in MFS (`repo/gc`).
    pub async fn repo_gc(&self) -> Result<(), KuboError> {
        let response = self
            .send_timed(
                "repo/gc",
                &[("quiet", "true")],
                None,
                Duration::from_secs(3600),
            )
            .await?;
        response
            .bytes()
            .await
            .map_err(|source| KuboError::BadReply {
                api: self.address.clone(),
                command: "repo/gc".into(),
                source,
            })?;
        Ok(())
    }

    /// Publishes `/ipfs/CID` under key `key` with IPNS sequence
    /// `sequence`, a record valid for `lifetime` that resolvers may cache
    /// for `ttl`.
    pub async fn name_publish(
        &self,
        cid: &str,
        key: &str,
        sequence: u64,
        lifetime: Duration,
        ttl: Duration,
    ) -> Result<(), KuboError> {
        let path = format!("/ipfs/{cid}");
        let sequence = sequence.to_string();
        let lifetime = format!("{}ms", lifetime.as_millis());
        let ttl = format!("{}ms", ttl.as_millis());
        self.call_unit(
            "name/publish",
            &[
                ("arg", &path),
                ("key", key),
                ("lifetime", &lifetime),
                ("ttl", &ttl),
                ("sequence", &sequence),
                ("allow-offline", "true"),
            ],
        )
        .await
    }

    /// The node's peer ID and the addresses it listens on (`id`), each
    /// without its `/p2p/` suffix.
    pub async fn id(&self) -> Result<(String, Vec<String>), KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Id {
            #[serde(rename = "ID")]
            id: String,
            #[serde(default)]
            addresses: Option<Vec<String>>,
        }
        let id: Id = self.call("id", &[]).await?;
        let suffix = format!("/p2p/{}", id.id);
        let addrs = id
            .addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.strip_suffix(&suffix).map(str::to_string).unwrap_or(a))
            .collect();
        Ok((id.id, addrs))
    }

    /// Adds a peering peer to the running node (`swarm/peering/add`; not
    /// kept across a restart, see [`Client::config_set_json`]).
    pub async fn peering_add(&self, multiaddr: &str) -> Result<(), KuboError> {
        self.call_unit("swarm/peering/add", &[("arg", multiaddr)])
            .await
    }

    /// Removes a peering peer from the running node (`swarm/peering/rm`).
    pub async fn peering_rm(&self, id: &str) -> Result<(), KuboError> {
        self.call_unit("swarm/peering/rm", &[("arg", id)]).await
    }

    /// Closes the connections to the peer of `multiaddr` (`.../p2p/ID`).
    pub async fn swarm_disconnect(&self, multiaddr: &str) -> Result<(), KuboError> {
        self.call_unit("swarm/disconnect", &[("arg", multiaddr)])
            .await
    }

    /// A configuration value (`config KEY`), as JSON; `None` when unset.
    pub async fn config_get(&self, key: &str) -> Result<Option<serde_json::Value>, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            value: serde_json::Value,
        }
        match self.call::<Entry>("config", &[("arg", key)]).await {
            Ok(entry) => Ok(Some(entry.value)),
            Err(KuboError::Rpc { message, .. }) if message.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a configuration value (`config --json KEY VALUE`), written to
    /// the repository's config file (kept across restarts).
    pub async fn config_set_json(
        &self,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), KuboError> {
        let value = value.to_string();
        self.call_unit("config", &[("arg", key), ("arg", &value), ("json", "true")])
            .await
    }

    /// The content of the file at `path` (`/ipfs/…`), at most `limit` bytes.
    pub async fn cat(&self, path: &str, limit: u64) -> Result<Vec<u8>, KuboError> {
        self.cat_path(path, 0, limit, false).await
    }

    /// The content of the file at `path` (`/ipfs/…`), streamed: Kubo is
    /// asked for `limit + 1` bytes and the reply is read chunk by chunk,
    /// stopping as soon as more than `limit` bytes arrived, so that a file
    /// larger than its caller allows is never buffered. A result longer
    /// than `limit` means the file is larger; the caller decides.
    pub async fn cat_bounded(&self, path: &str, limit: u64) -> Result<Vec<u8>, KuboError> {
        // The whole call is bounded by LONG_CALL already: no stall bound of
        // its own.
        self.cat_bounded_stalling(path, limit, LONG_CALL).await
    }

    /// Like [`Client::cat_bounded`], but fails with [`KuboError::Stalled`]
    /// when no bytes arrive for `stall` (a block nobody serves, or a peer
    /// bitswap stopped asking): the caller then takes another way.
    pub async fn cat_bounded_stalling(
        &self,
        path: &str,
        limit: u64,
        stall: Duration,
    ) -> Result<Vec<u8>, KuboError> {
        let stalled = || KuboError::Stalled {
            what: format!("cat {path}"),
            after: stall,
        };
        let length = limit.saturating_add(1).to_string();
        let args = [("arg", path), ("length", length.as_str())];
        let call = self.send_timed("cat", &args, None, LONG_CALL);
        let mut response = tokio::time::timeout(stall, call)
            .await
            .map_err(|_| stalled())??;
        let mut out = Vec::new();
        while let Some(chunk) = tokio::time::timeout(stall, self.next_chunk(&mut response, "cat"))
            .await
            .map_err(|_| stalled())??
        {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                out.truncate(
                    usize::try_from(limit)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                );
                break;
            }
        }
        Ok(out)
    }

    /// `length` bytes of file `cid` from `offset` (fewer at the end of the
    /// file). Missing blocks are fetched; the caller bounds the time.
    pub async fn cat_range(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, KuboError> {
        self.cat_path(&format!("/ipfs/{cid}"), offset, length, false)
            .await
    }

    /// `length` bytes of file `cid` from `offset`, from local blocks only:
    /// a missing block is an error, never a fetch (nor a read-ahead).
    pub async fn cat_range_local(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, KuboError> {
        self.cat_path(&format!("/ipfs/{cid}"), offset, length, true)
            .await
    }

    /// The bytes of block `cid` (fetched if missing; Kubo checks them
    /// against the CID), at most `limit`: a larger block is refused as it
    /// streams in, never buffered whole.
    pub async fn block_get(&self, cid: &str, limit: u64) -> Result<Vec<u8>, KuboError> {
        let mut response = self
            .send_timed("block/get", &[("arg", cid)], None, LONG_CALL)
            .await?;
        self.body_within(&mut response, "block/get", limit, || format!("block {cid}"))
            .await
    }

    /// Makes block `cid` local (fetched if missing, checked against the
    /// CID) without sending its bytes back: `block/stat`. Returns its size.
    pub async fn block_fetch(&self, cid: &str) -> Result<u64, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Stat {
            size: u64,
        }
        let response = self
            .send_timed("block/stat", &[("arg", cid)], None, LONG_CALL)
            .await?;
        let body = response
            .bytes()
            .await
            .map_err(|source| KuboError::BadReply {
                api: self.address.clone(),
                command: "block/stat".into(),
                source,
            })?;
        let stat: Stat =
            serde_json::from_slice(&body).map_err(|e| self.garbled("block/stat", e))?;
        Ok(stat.size)
    }

    /// Reads `length` bytes of file `cid` from `offset` and drops them, a
    /// chunk at a time (nothing is buffered): what is read becomes local.
    /// Returns the bytes read.
    pub async fn read_and_discard(
        &self,
        cid: &str,
        offset: u64,
        length: u64,
    ) -> Result<u64, KuboError> {
        let path = format!("/ipfs/{cid}");
        let (offset, length) = (offset.to_string(), length.to_string());
        let mut response = self
            .send_timed(
                "cat",
                &[("arg", &path), ("offset", &offset), ("length", &length)],
                None,
                LONG_CALL,
            )
            .await?;
        let mut read = 0u64;
        while let Some(chunk) = self.next_chunk(&mut response, "cat").await? {
            read += chunk.len() as u64;
        }
        Ok(read)
    }

    /// Writes file `cid` into `out`, streamed, stopping after `limit + 1`
    /// bytes (more than `limit` means the file is larger than its caller
    /// allows). Returns the bytes written. Missing blocks are fetched.
    pub async fn cat_into(
        &self,
        cid: &str,
        limit: u64,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, KuboError> {
        use tokio::io::AsyncWriteExt;
        let path = format!("/ipfs/{cid}");
        let length = limit.saturating_add(1).to_string();
        let mut response = self
            .send_timed(
                "cat",
                &[("arg", &path), ("length", &length)],
                None,
                LONG_CALL,
            )
            .await?;
        let mut written = 0u64;
        while let Some(chunk) = self.next_chunk(&mut response, "cat").await? {
            out.write_all(&chunk)
                .await
                .map_err(|e| KuboError::NotUsable(format!("cannot write {cid}: {e}")))?;
            written += chunk.len() as u64;
            if written > limit {
                break;
            }
        }
        Ok(written)
    }

    /// `length` bytes of the file at `path` from `offset`; with `offline`,
    /// from local blocks only.
    async fn cat_path(
        &self,
        path: &str,
        offset: u64,
        length: u64,
        offline: bool,
    ) -> Result<Vec<u8>, KuboError> {
        let (offset, length) = (offset.to_string(), length.to_string());
        let mut args = vec![("arg", path), ("offset", &offset), ("length", &length)];
        if offline {
            args.push(("offline", "true"));
        }
        // Callers bound a read by their own deadline (a mount's read
        // timeout, a document timeout), not the client's short one.
        let response = self.send_timed("cat", &args, None, LONG_CALL).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| KuboError::BadReply {
                api: self.address.clone(),
                command: "cat".into(),
                source,
            })?;
        Ok(bytes.to_vec())
    }

    /// The children of the UnixFS directory at `path`, from the directory's
    /// own blocks (`ls?resolve-type=false&size=false`: no child is fetched,
    /// so only children whose CID tells, `raw` ones, get a type and size),
    /// within `timeout`. A reply larger than `limit` bytes is refused unread.
    pub async fn ls(
        &self,
        path: &str,
        limit: u64,
        timeout: Duration,
    ) -> Result<Vec<Link>, KuboError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Object {
            #[serde(default)]
            links: Vec<Link>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Listing {
            objects: Vec<Object>,
        }
        let args = [
            ("arg", path),
            ("resolve-type", "false"),
            ("size", "false"),
            ("stream", "false"),
        ];
        let call = async {
            let mut response = self.send_timed("ls", &args, None, timeout).await?;
            let body = self
                .body_within(&mut response, "ls", limit, || {
                    format!("the listing of {path}")
                })
                .await?;
            let listing: Listing =
                serde_json::from_slice(&body).map_err(|e| self.garbled("ls", e))?;
            Ok(listing.objects.into_iter().flat_map(|o| o.links).collect())
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(KuboError::Stalled {
                what: format!("listing {path}"),
                after: timeout,
            }),
        }
    }

    /// `dag/stat` over `cids`, from local blocks only.
    pub async fn dag_stat(&self, cids: &[&str]) -> Result<DagStat, KuboError> {
        let mut args: Vec<(&str, &str)> = cids.iter().map(|c| ("arg", *c)).collect();
        args.extend([("progress", "false"), ("offline", "true")]);
        let response = self.send("dag/stat", &args, None).await?;
        let text = response
            .text()
            .await
            .map_err(|source| KuboError::BadReply {
                api: self.address.clone(),
                command: "dag/stat".into(),
                source,
            })?;
        let last = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str(last).map_err(|e| self.garbled("dag/stat", e))
    }

    /// The next piece of a streamed reply to `command`, `None` at its end.
    async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
        command: &str,
    ) -> Result<Option<bytes::Bytes>, KuboError> {
        response
            .chunk()
            .await
            .map_err(|source| KuboError::BadReply {
                api: self.address.clone(),
                command: command.into(),
                source,
            })
    }

    /// The whole body of `response`, read chunk by chunk and refused
    /// (`Garbled`: "WHAT is larger than LIMIT bytes") as soon as it grows
    /// past `limit`, never buffered beyond it.
    async fn body_within(
        &self,
        response: &mut reqwest::Response,
        command: &str,
        limit: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, KuboError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk(response, command).await? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limit {
                return Err(KuboError::Garbled {
                    api: self.address.clone(),
                    command: command.to_string(),
                    message: format!("{} is larger than {limit} bytes", what()),
                });
            }
        }
        Ok(body)
    }

    fn garbled(&self, command: &str, e: serde_json::Error) -> KuboError {
        KuboError::Garbled {
            api: self.address.clone(),
            command: command.to_string(),
            message: e.to_string(),
        }
    }

    async fn call_unit(&self, command: &str, args: &[(&str, &str)]) -> Result<(), KuboError> {
        self.send(command, args, None).await.map(|_| ())
    }

    /// Sends a call; an HTTP error status becomes [`KuboError::Rpc`].
    async fn send(
        &self,
        command: &str,
        args: &[(&str, &str)],
        form: Option<reqwest::multipart::Form>,
    ) -> Result<reqwest::Response, KuboError> {
        match form {
            // An upload takes as long as the tree is big.
            Some(form) => {
                let day = Duration::from_secs(24 * 3600);
                self.send_timed(command, args, Some(form), day).await
            }
            None => {
                let request = self.http.post(self.url(command)).query(args);
                self.send_request(command, request).await
            }
        }
    }

    /// Like [`Client::send`], with its own deadline for the whole reply
    /// instead of the client's.
    async fn send_timed(
        &self,
        command: &str,
        args: &[(&str, &str)],
        form: Option<reqwest::multipart::Form>,
        timeout: Duration,
    ) -> Result<reqwest::Response, KuboError> {
        let mut request = self
            .http
            .post(self.url(command))
            .query(args)
            .timeout(timeout);
        if let Some(form) = form {
            request = request.multipart(form);
        }
        self.send_request(command, request).await
    }

    fn url(&self, command: &str) -> String {
        format!("{}/api/v0/{}", self.base, command)
    }

    /// Sends `request`; an HTTP error status becomes [`KuboError::Rpc`].
    async fn send_request(
        &self,
        command: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, KuboError> {
        let response = request
            .send()
            .await
            .map_err(|source| KuboError::Unreachable {
                api: self.address.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(self.rpc_error(command, response).await);
        }
        Ok(response)
    }

    /// The error of a reply with an HTTP error status (Kubo's JSON
    /// `{Message}` when it sent one, else the body).
    async fn rpc_error(&self, command: &str, response: reqwest::Response) -> KuboError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        KuboError::Rpc {
            api: self.address.clone(),
            command: command.to_string(),
            status,
            message: serde_json::from_str::<RpcError>(&body)
                .map(|e| e.message)
                .unwrap_or(body),
        }
    }

    /// Calls `command` with query `args` and decodes a single JSON reply.
    async fn call<T: DeserializeOwned>(
        &self,
        command: &str,
        args: &[(&str, &str)],
    ) -> Result<T, KuboError> {
        let response = self.send(command, args, None).await?;
        response.json().await.map_err(|source| KuboError::BadReply {
            api: self.address.clone(),
            command: command.to_string(),
            source,
        })
    }
}

/// Checks a version string Kubo reported against [`MIN_VERSION`].
pub fn check_version(found: &str) -> Result<(), KuboError> {
    let version = semver::Version::parse(found.trim().trim_start_matches('v'))
        .map_err(|_| KuboError::UnknownVersion(found.to_string()))?;
    if (version.major, version.minor) < MIN_VERSION {
        return Err(KuboError::TooOld {
            found: found.to_string(),
        });
    }
    Ok(())
}

/// Where a Kubo API address leads.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `http://host:port`, no trailing slash.
    Http(String),
    /// A unix socket path.
    Unix(std::path::PathBuf),
}

/// The endpoint of a Kubo API address given as a multiaddr (`/ip4/…/tcp/…`,
/// `/ip6/…`, `/dns…/…`, `/unix/<absolute path>`), an `http://` URL or
/// `unix:<absolute path>`.
pub fn api_endpoint(address: &str) -> Result<Endpoint, KuboError> {
    let trimmed = address.trim();
    let unix = trimmed
        .strip_prefix("/unix")
        .filter(|p| p.starts_with('/'))
        .or_else(|| trimmed.strip_prefix("unix:"));
    match unix {
        Some(path) => {
            if !path.starts_with('/') || path.contains('\0') || path.ends_with('/') {
                return Err(KuboError::BadAddress(trimmed.to_string()));
            }
            check_socket_path(path)?;
            Ok(Endpoint::Unix(path.into()))
        }
        None => api_base_url(trimmed).map(Endpoint::Http),
    }
}

/// Fails when `path` is too long for a unix socket address.
pub fn check_socket_path(path: &str) -> Result<(), KuboError> {
    if path.len() > MAX_SOCKET_PATH {
        return Err(KuboError::SocketPathTooLong {
            path: path.to_string(),
            len: path.len(),
        });
    }
    Ok(())
}

/// `http://host:port` for a Kubo API address given as a TCP multiaddr
/// (`/ip4/…/tcp/…`, `/ip6/…`, `/dns…/…`) or as an `http://` URL.
pub fn api_base_url(address: &str) -> Result<String, KuboError> {
    let address = address.trim();
    let bad = || KuboError::BadAddress(address.to_string());
    if let Some(rest) = address.strip_prefix("http://") {
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        return Ok(format!("http://{host}"));
    }
    let parts: Vec<&str> = address.split('/').collect();
    match parts.as_slice() {
        ["", proto, host, "tcp", port] if !host.is_empty() => {
            port.parse::<u16>().map_err(|_| bad())?;
            match *proto {
                "ip4" | "dns" | "dns4" | "dns6" => Ok(format!("http://{host}:{port}")),
                "ip6" => Ok(format!("http://[{host}]:{port}")),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_and_urls_become_base_urls() {
        assert_eq!(
            api_base_url("/ip4/127.0.0.1/tcp/5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("/ip6/::1/tcp/5001\n").unwrap(),
            "http://[::1]:5001"
        );
        assert_eq!(
            api_base_url("/dns/localhost/tcp/5001").unwrap(),
            "http://localhost:5001"
        );
        assert_eq!(
            api_base_url("http://127.0.0.1:5001/").unwrap(),
            "http://127.0.0.1:5001"
        );
        for bad in [
            "",
            "/ip4/127.0.0.1/udp/5001",
            "/ip4/127.0.0.1/tcp/x",
            "ftp://x",
            "http://a/b",
        ] {
            assert!(api_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unix_socket_addresses_are_understood() {
        assert_eq!(
            api_endpoint("/unix/run/flatipfs/kubo.sock").unwrap(),
            Endpoint::Unix("/run/flatipfs/kubo.sock".into())
        );
        assert_eq!(
            api_endpoint("unix:/run/kubo.sock\n").unwrap(),
            Endpoint::Unix("/run/kubo.sock".into())
        );
        assert_eq!(
            api_endpoint("/ip4/127.0.0.1/tcp/5001").unwrap(),
            Endpoint::Http("http://127.0.0.1:5001".into())
        );
        for bad in ["/unix", "/unix/", "unix:relative", "/unixx/a", "unix:/a/"] {
            assert!(api_endpoint(bad).is_err(), "{bad}");
        }
        let long = format!("/unix/{}", "d/".repeat(60));
        let long = long.trim_end_matches('/');
        let e = api_endpoint(long).unwrap_err();
        assert!(matches!(e, KuboError::SocketPathTooLong { .. }), "{e}");
        assert!(e.to_string().contains("107"), "{e}");
    }

    #[test]
    fn version_gate_names_the_version_found() {
        assert!(check_version("0.43.1").is_ok());
        assert!(check_version("0.42.0-rc1").is_ok());
        assert!(check_version("1.0.0").is_ok());
        let e = check_version("0.41.2").unwrap_err();
        assert!(e.to_string().contains("0.41.2"), "{e}");
        assert!(e.to_string().contains("0.42"), "{e}");
        assert!(matches!(
            check_version("banana"),
            Err(KuboError::UnknownVersion(_))
        ));
    }
}
