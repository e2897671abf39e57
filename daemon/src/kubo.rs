//! Client of Kubo's RPC API (`POST /api/v0/<command>`).
//!
//! Owns the address formats Kubo uses for its API, the HTTP calls and the
//! version gate (flatipfsd needs Kubo 0.42 or newer). Knows nothing of D-Bus.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The oldest Kubo flatipfsd works with (`../shared/design.md`, "Kubo usage").
pub const MIN_VERSION: (u64, u64) = (0, 42);

/// Failures talking to Kubo.
#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    #[error("invalid Kubo API address {0:?}: expected a multiaddr like /ip4/127.0.0.1/tcp/5001 or an http:// URL")]
    BadAddress(String),
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
    #[error("Kubo {found} is too old: flatipfsd needs Kubo {}.{} or newer", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { found: String },
    #[error("Kubo reported a version flatipfsd cannot read: {0:?}")]
    UnknownVersion(String),
}

/// One Kubo node's RPC API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
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
        let base = api_base_url(address)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|source| KuboError::Unreachable {
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

    /// Calls `command` with query `args` and decodes a single JSON reply.
    async fn call<T: DeserializeOwned>(
        &self,
        command: &str,
        args: &[(&str, &str)],
    ) -> Result<T, KuboError> {
        let url = format!("{}/api/v0/{}", self.base, command);
        let response = self
            .http
            .post(url)
            .query(args)
            .send()
            .await
            .map_err(|source| KuboError::Unreachable {
                api: self.address.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<RpcError>(&body)
                .map(|e| e.message)
                .unwrap_or(body);
            return Err(KuboError::Rpc {
                api: self.address.clone(),
                command: command.to_string(),
                status: status.as_u16(),
                message,
            });
        }
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

/// `http://host:port` for a Kubo API address given as a multiaddr
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
