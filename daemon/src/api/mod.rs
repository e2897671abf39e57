//! The D-Bus objects of `org.flatipfs.Manager1`.
//!
//! This layer only translates: it validates arguments, asks the polkit gate,
//! calls into [`Manager`], and maps results and errors to D-Bus. Property
//! changes coming from below are emitted as `PropertiesChanged` here.

mod app;
mod job;
mod options;

use std::collections::HashMap;
use std::sync::Arc;

use flatipfs_dbus::polkit::Action;
use flatipfs_dbus::{Error, ErrorKind, KuboStatus, MANAGER_PATH};
use tokio::sync::watch;
use tracing::warn;
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::manager::Manager;
use crate::policy::{Denied, Gate};
use crate::publish::{self, PublishError};
use crate::remotes::{self, RemoteError};

pub use app::forward_apps;
pub(crate) use app::map_install_error as install_error_kind;
pub use job::spawn_job;

/// The D-Bus error for an install failure.
pub(crate) fn install_error(e: &crate::install::InstallError) -> Error {
    install_error_kind(e)
}

/// What this daemon implements, as the `Features` property lists it.
pub const FEATURES: &[&str] = &[
    "kubo-status",
    "reload-config",
    "publish",
    "remotes",
    "install",
    "update",
    "rollback",
    "pins",
    "automatic-updates",
    "mirrors",
];

/// The manager object at `/org/flatipfs/Manager1`.
pub struct ManagerObject {
    manager: Arc<Manager>,
    gate: Gate,
    kubo_status: KuboStatus,
    scheduler: crate::updates::SchedulerInfo,
}

impl ManagerObject {
    pub fn new(manager: Arc<Manager>, gate: Gate, kubo_status: KuboStatus) -> Self {
        ManagerObject {
            manager,
            gate,
            kubo_status,
            scheduler: Default::default(),
        }
    }

    /// What `AddRemoteMirror` and `RemoveRemoteMirror` do before their
    /// work: no options, `remote` and `peer` checked, polkit asked
    /// (`manage-remote-mirrors`); then the publisher that does it.
    async fn remote_mirror_publisher(
        &self,
        remote: &str,
        peer: &str,
        options: &HashMap<String, OwnedValue>,
        header: &Header<'_>,
    ) -> Result<publish::Publisher, Error> {
        options::reject_unknown(options, &[])?;
        crate::remote_mirrors::validate(remote, Some(peer)).map_err(|e| remote_mirror_error(&e))?;
        authorize(
            &self.gate,
            header,
            Action::ManageRemoteMirrors,
            &HashMap::from([("remote", remote), ("peer", peer)]),
        )
        .await?;
        self.manager
            .publisher()
            .await
            .map_err(|e| publish_error(&e))
    }
}

/// Asks the gate; a refusal becomes the matching D-Bus error.
pub(crate) async fn authorize(
    gate: &Gate,
    header: &Header<'_>,
    action: Action,
    details: &HashMap<&str, &str>,
) -> Result<u32, Error> {
    gate.authorize(header, action, details)
        .await
        .map_err(|denied| match denied {
            Denied::Refused { .. } => Error::new(ErrorKind::AccessDenied, denied.to_string()),
            Denied::NeedsInteraction { .. } => Error::new(
                ErrorKind::InteractiveAuthorizationRequired,
                denied.to_string(),
            ),
        })
}

/// The D-Bus error for a remote failure.
pub(crate) fn remote_error(e: &RemoteError) -> Error {
    let kind = match e {
        RemoteError::BadName(_) | RemoteError::BadAddress(_) => ErrorKind::InvalidArgs,
        RemoteError::Exists(_) => ErrorKind::AlreadyInstalled,
        RemoteError::Missing(_) => ErrorKind::NotFound,
        RemoteError::Store(_) => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}

/// The D-Bus error of a mirror failure.
pub(crate) fn mirror_error(e: &crate::mirror::MirrorError) -> Error {
    use crate::mirror::MirrorError as M;
    let kind = match e {
        M::Remote(r) => return remote_error(r),
        M::BadHistory(_) => ErrorKind::InvalidArgs,
        M::NoSuchRemote(_) | M::NotMirrored(_) => ErrorKind::NotFound,
        M::Exists(_) => ErrorKind::AlreadyInstalled,
        M::Source(crate::source::SourceError::ResolveFailed { .. }) => ErrorKind::ResolveFailed,
        M::Source(crate::source::SourceError::Stale { .. }) => ErrorKind::StaleIndex,
        M::Source(crate::source::SourceError::Invalid { .. }) => ErrorKind::VerificationFailed,
        M::Source(_) => ErrorKind::FetchFailed,
        M::Kubo { .. } => ErrorKind::FetchFailed,
        M::Store(_) => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}

/// The D-Bus error of a failure changing a published remote's mirrors.
pub(crate) fn remote_mirror_error(e: &crate::remote_mirrors::RemoteMirrorError) -> Error {
    use crate::remote_mirrors::RemoteMirrorError as R;
    let kind = match e {
        R::Publish(p) => return publish_error(p),
        R::BadPeer(_) | R::BadRemoteName(_) | R::Own(_) => ErrorKind::InvalidArgs,
        R::TooMany { .. } => ErrorKind::NoSpace,
        R::NotListed { .. } => ErrorKind::NotFound,
    };
    Error::new(kind, e.to_string())
}

/// The D-Bus error of a catalog failure.
pub(crate) fn catalog_error(e: &crate::catalog::CatalogError) -> Error {
    use crate::catalog::CatalogError as C;
    let kind = match e {
        C::NoSuchRemote(_) | C::NotCached(_) | C::NoIcon { .. } => ErrorKind::NotFound,
        C::Invalid { .. } => ErrorKind::VerificationFailed,
        C::Fetch { .. } => ErrorKind::FetchFailed,
        C::Io { .. } => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}

/// One app a remote offers, as a dictionary (`ListAvailable`).
fn available_app(a: &crate::catalog::Available) -> HashMap<String, OwnedValue> {
    let s = |v: &str| OwnedValue::try_from(Value::from(v)).expect("plain");
    let c = &a.component;
    let mut m = HashMap::new();
    m.insert("Remote".to_string(), s(&a.remote));
    m.insert("Id".to_string(), s(&c.id));
    m.insert("Name".to_string(), s(&c.name));
    m.insert("Summary".to_string(), s(&c.summary));
    m.insert("Description".to_string(), s(&c.description.join("\n")));
    m.insert(
        "License".to_string(),
        s(c.license.as_deref().unwrap_or_default()),
    );
    m.insert(
        "Version".to_string(),
        s(c.version.as_deref().unwrap_or_default()),
    );
    m.insert(
        "DownloadSize".to_string(),
        OwnedValue::from(c.download_size.unwrap_or(0)),
    );
    m.insert(
        "Installed".to_string(),
        OwnedValue::from(a.installed.is_some()),
    );
    m.insert(
        "InstalledVersion".to_string(),
        s(a.installed.as_deref().unwrap_or_default()),
    );
    m.insert(
        "IconSizes".to_string(),
        OwnedValue::try_from(Value::from(c.icons.clone())).expect("plain"),
    );
    m
}

pub(crate) fn publish_error(e: &PublishError) -> Error {
    use crate::flatpak::FlatpakError;
    let kind = match e {
        PublishError::BadRemoteName(_)
        | PublishError::BadRef(_)
        | PublishError::BadStartupPath(_)
        | PublishError::BadStartupRange { .. }
        | PublishError::BadStartupSet(_) => ErrorKind::InvalidArgs,
        PublishError::NoSuchRemote(_) | PublishError::MissingPath(_) => ErrorKind::NotFound,
        PublishError::RemoteExists(_) => ErrorKind::AlreadyInstalled,
        PublishError::Flatpak(FlatpakError::NoSuchRef { .. } | FlatpakError::NotARepo(_)) => {
            ErrorKind::NotFound
        }
        PublishError::Flatpak(FlatpakError::NoMetadata(_) | FlatpakError::BadMetadata { .. }) => {
            ErrorKind::VerificationFailed
        }
        PublishError::Tree(_) => ErrorKind::VerificationFailed,
        PublishError::Kubo(_) | PublishError::Encode(crate::encode::EncodeError::Kubo(_)) => {
            ErrorKind::FetchFailed
        }
        PublishError::Flatpak(_)
        | PublishError::Store(_)
        | PublishError::Encode(_)
        | PublishError::Internal(_) => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}

#[interface(name = "org.flatipfs.Manager1")]
impl ManagerObject {
    /// Re-reads the configuration file. Polkit action `configure`.
    async fn reload_config(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        authorize(&self.gate, &header, Action::Configure, &HashMap::new()).await?;
        self.manager
            .reload_config()
            .map(|_| ())
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))
    }

    /// Creates a remote this daemon publishes to: a new key in Kubo and an
    /// empty store index under it. Returns the remote's IPNS name.
    /// Polkit action `publish`. No options are defined yet.
    async fn create_remote(
        &self,
        name: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        options::reject_unknown(&options, &[])?;
        if !publish::valid_remote_name(&name) {
            return Err(publish_error(&PublishError::BadRemoteName(name)));
        }
        authorize(
            &self.gate,
            &header,
            Action::Publish,
            &HashMap::from([("remote", name.as_str())]),
        )
        .await?;
        let publisher = self
            .manager
            .publisher()
            .await
            .map_err(|e| publish_error(&e))?;
        publisher
            .create_remote(&name)
            .await
            .map_err(|e| publish_error(&e))
    }

    /// Trusts a remote to install apps from: NAME for the store index at
    /// ADDRESS (`/ipns/k51…`). Polkit action `trust-remote`. No options.
    async fn add_remote(
        &self,
        name: String,
        address: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        options::reject_unknown(&options, &[])?;
        remotes::validate(&name, Some(&address)).map_err(|e| remote_error(&e))?;
        let details = HashMap::from([("remote", name.as_str()), ("address", address.as_str())]);
        authorize(&self.gate, &header, Action::TrustRemote, &details).await?;
        self.manager
            .remotes()
            .add(&name, &address)
            .await
            .map(|_| ())
            .map_err(|e| remote_error(&e))
    }

    /// Stops trusting a remote. Polkit action `trust-remote`. No options.
    async fn remove_remote(
        &self,
        name: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        options::reject_unknown(&options, &[])?;
        remotes::validate(&name, None).map_err(|e| remote_error(&e))?;
        authorize(
            &self.gate,
            &header,
            Action::TrustRemote,
            &HashMap::from([("remote", name.as_str())]),
        )
        .await?;
        remotes::remove(&self.manager, &name)
            .await
            .map_err(|e| remote_error(&e))
    }

    /// Every remote: (name, IPNS name, details). Details: `Publishing` (b),
    /// true for remotes this daemon publishes to; for those
    /// `RecordExpires` (t) and, when the record is expired or about to,
    /// `RecordWarning` (s); for the others `HighestSequence` (t) and
    /// `LastSeen` (t, 0: never). Needs no authorization.
    async fn list_remotes(
        &self,
    ) -> Result<Vec<(String, String, HashMap<String, OwnedValue>)>, Error> {
        let listed = self
            .manager
            .remotes()
            .list()
            .map_err(|e| remote_error(&e))?;
        Ok(listed
            .into_iter()
            .map(|r| {
                let mut details =
                    HashMap::from([("Publishing".to_string(), OwnedValue::from(r.publishing))]);
                if r.publishing {
                    details.insert("RecordExpires".into(), OwnedValue::from(r.record_expires));
                    if let Some(warning) = r.record_warning {
                        details.insert(
                            "RecordWarning".into(),
                            OwnedValue::try_from(zbus::zvariant::Value::from(warning))
                                .expect("a string has no fd"),
                        );
                    }
                } else {
                    details.insert(
                        "HighestSequence".into(),
                        OwnedValue::from(r.highest_sequence),
                    );
                    details.insert("LastSeen".into(), OwnedValue::from(r.last_seen));
                }
                (r.name, r.ipns, details)
            })
            .collect())
    }

    /// Publishes a Flatpak build as a release of a remote, as a job.
    /// `path` is a deploy directory, or a Flatpak repository with option
    /// `ref`. Options: `remote` (s, required), `ref` (s), `version` (s),
    /// `arch` (s), `branch` (s), `startup-set` (as). Polkit action `publish`.
    async fn publish(
        &self,
        path: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        let request = options::publish_request(&path, &options)?;
        let uid = authorize(
            &self.gate,
            &header,
            Action::Publish,
            &HashMap::from([("remote", request.remote.as_str()), ("path", path.as_str())]),
        )
        .await?;
        let job = self.manager.jobs.create("publish", "", uid);
        let manager = self.manager.clone();
        let worker_job = job.clone();
        let work = async move {
            let publisher = manager.publisher().await.map_err(|e| publish_error(&e))?;
            let outcome = publisher
                .publish(&request, worker_job.as_ref())
                .await
                .map_err(|e| publish_error(&e))?;
            worker_job.set_app(&outcome.id);
            Ok(job::publish_details(&outcome))
        };
        spawn_job(connection, &self.manager, self.gate.clone(), job, work).await
    }

    /// Installs an app as a job and returns its object and the job's.
    /// `source` is an app id (option `remote` names the trusted remote) or
    /// `/ipfs/<release root>` for a fixed release (its manifest is fetched
    /// before the method returns). Polkit action `install`.
    async fn install(
        &self,
        source: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<(OwnedObjectPath, OwnedObjectPath), Error> {
        use crate::install::{self, InstallError};
        use crate::source::Source;
        options::reject_unknown(&options, &["remote"])?;
        let remote = options::string(&options, "remote")?;
        if let Some(remote) = &remote {
            remotes::validate(remote, None).map_err(|e| remote_error(&e))?;
        }
        let parsed = Source::parse(&source, remote.as_deref())
            .map_err(|e| install_error(&InstallError::Source(e)))?;
        let mut details = HashMap::from([("source", source.as_str())]);
        if let Source::Remote { remote, id } = &parsed {
            details.insert("remote", remote);
            details.insert("app", id);
        }
        let uid = authorize(&self.gate, &header, Action::Install, &details).await?;
        let (id, plan) = match &parsed {
            Source::Remote { id, .. } => (id.clone(), None),
            Source::Release(cid) => {
                let plan = install::plan_release(&self.manager, cid)
                    .await
                    .map_err(|e| install_error(&e))?;
                (plan.manifest.id.clone(), Some(plan))
            }
        };
        let job = self.manager.jobs.create("install", &id, uid);
        let claim = match self.manager.apps.claim(&id, job.id()) {
            Ok(claim) => claim,
            Err(holder) => {
                self.manager.jobs.forget(job.id());
                return Err(install_error(&InstallError::Busy { id, job: holder }));
            }
        };
        if let Err(e) = install::ensure_not_installed(&self.manager, &id) {
            self.manager.jobs.forget(job.id());
            return Err(install_error(&e));
        }
        let manager = self.manager.clone();
        let worker_job = job.clone();
        let app_id = id.clone();
        let work = async move {
            let _claim = claim;
            let plan = match (plan, parsed) {
                (Some(plan), _) => plan,
                (None, Source::Remote { remote, id }) => {
                    install::plan_remote(&manager, &remote, &id, &worker_job)
                        .await
                        .map_err(|e| install_error(&e))?
                }
                (None, Source::Release(_)) => unreachable!("planned above"),
            };
            install::install(&manager, plan, worker_job)
                .await
                .map_err(|e| install_error(&e))
        };
        let job_path = spawn_job(connection, &self.manager, self.gate.clone(), job, work).await?;
        let app = OwnedObjectPath::try_from(flatipfs_dbus::app_path(&app_id))
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        Ok((app, job_path))
    }

    /// The installed apps and runtimes (their objects), by id.
    /// Needs no authorization.
    async fn list_apps(&self) -> Vec<OwnedObjectPath> {
        self.manager
            .apps
            .list()
            .into_iter()
            .filter_map(|a| {
                OwnedObjectPath::try_from(flatipfs_dbus::app_path(&a.snapshot().id)).ok()
            })
            .collect()
    }

    /// The object of installed app `id`; `NotInstalled` if there is none.
    /// Needs no authorization.
    async fn get_app(
        &self,
        id: String,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        // An app is installed for a caller once its object can be read: the
        // object is exported (and removed) shortly after the app is added
        // to (or removed from) the daemon's list, and a path to an object
        // that is not there yet would fail the caller's next read.
        if self.manager.apps.get(&id).is_none() || !app::is_exported(connection, &id).await {
            return Err(install_error(&crate::install::InstallError::NotInstalled(
                id,
            )));
        }
        OwnedObjectPath::try_from(flatipfs_dbus::app_path(&id))
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
    }

    /// What the trusted remotes offer, from their cached catalogs (see
    /// `Refresh`): one dictionary per app (`AvailableApp` keys: `Remote`,
    /// `Id`, `Name`, `Summary`, `Description` (paragraphs joined by
    /// newlines), `License`, `Version`, `DownloadSize` (t, 0: unknown),
    /// `Installed` (b), `InstalledVersion`, `IconSizes` (au)). `remote`:
    /// one remote, or "" for all. Needs no authorization. `NotFound` for an
    /// unknown remote or one whose catalog was never fetched.
    async fn list_available(
        &self,
        remote: String,
    ) -> Result<Vec<HashMap<String, OwnedValue>>, Error> {
        let remote = (!remote.is_empty()).then_some(remote.as_str());
        crate::catalog::list(&self.manager, remote)
            .map(|list| list.iter().map(available_app).collect())
            .map_err(|e| catalog_error(&e))
    }

    /// Apps of every trusted remote matching all of `words` (id, name,
    /// summary, description; ignoring case), best first; dictionaries as
    /// `ListAvailable`. Needs no authorization.
    async fn search_available(
        &self,
        words: String,
    ) -> Result<Vec<HashMap<String, OwnedValue>>, Error> {
        crate::catalog::search(&self.manager, &words)
            .map(|list| list.iter().map(available_app).collect())
            .map_err(|e| catalog_error(&e))
    }

    /// The cached catalog of `remote` as an AppStream collection (written by
    /// the daemon from the validated catalog). Needs no authorization.
    async fn get_catalog(&self, remote: String) -> Result<String, Error> {
        crate::catalog::catalog_xml(&self.manager, &remote).map_err(|e| catalog_error(&e))
    }

    /// The cached icon (PNG, `size`x`size`, re-encoded by the daemon) of app
    /// `id` in `remote`'s catalog. Needs no authorization.
    async fn get_icon(&self, remote: String, id: String, size: u32) -> Result<Vec<u8>, Error> {
        crate::catalog::icon(&self.manager, &remote, &id, size).map_err(|e| catalog_error(&e))
    }

    /// Updates every app installed from a remote, as one job (`Type`
    /// `update-all`). Options: `download-only` (b), `cached-only` (b).
    /// Polkit action `update`. Updates that grant an app new permissions
    /// are held, never applied: `Details` `HeldForPermissions` lists them.
    async fn update_all(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(&options, &["download-only", "cached-only"])?;
        let request = crate::update::UpdateOptions {
            version: None,
            download_only: options::boolean(&options, "download-only")?,
            cached_only: options::boolean(&options, "cached-only")?,
            allow_new_permissions: false,
        };
        let uid = authorize(&self.gate, &header, Action::Update, &HashMap::new()).await?;
        let job = self.manager.jobs.create("update-all", "", uid);
        let manager = self.manager.clone();
        let worker_job = job.clone();
        let work = async move {
            crate::update::update_all(&manager, request, worker_job)
                .await
                .map_err(|e| install_error(&e))
        };
        spawn_job(connection, &self.manager, self.gate.clone(), job, work).await
    }

    /// Checks the remotes of the installed apps for newer releases, as a
    /// job (`Type` `refresh`); apps' `AvailableVersion` follow. Options:
    /// `apps` (as, default all). Polkit action `refresh`. `Busy` while the
    /// same user's previous refresh still runs. `Details`:
    /// `Available` (s, `ID VERSION` pairs, comma-separated),
    /// `CatalogErrors` (s, one line per remote whose catalog was refused or
    /// could not be fetched; its previous catalog stays cached). Every
    /// trusted remote's catalog is refreshed.
    async fn refresh(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(&options, &["apps"])?;
        let apps = options::string_list(&options, "apps")?;
        let uid = authorize(&self.gate, &header, Action::Refresh, &HashMap::new()).await?;
        // One at a time per user (a bus name is free to make, a uid is not).
        let job = self
            .manager
            .jobs
            .create_one_per_initiator("refresh", "", uid)
            .map_err(|running| {
                Error::new(
                    ErrorKind::Busy,
                    format!("your refresh (job {running}) is still running; wait for it or cancel it with `flatipfsctl cancel {running}`"),
                )
            })?;
        let manager = self.manager.clone();
        let work = async move {
            let only = (!apps.is_empty()).then_some(apps);
            crate::update::refresh(&manager, only.as_deref())
                .await
                .map_err(|e| install_error(&e))?;
            let catalog_errors = crate::catalog::refresh_all(&manager, None).await;
            let state = manager
                .store()
                .load()
                .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
            let available: Vec<String> = state
                .apps
                .values()
                .filter_map(|a| {
                    a.available
                        .as_ref()
                        .map(|v| format!("{} {}", a.id, v.version))
                })
                .collect();
            Ok([
                (
                    "Available".to_string(),
                    crate::jobs::Detail::Text(available.join(", ")),
                ),
                (
                    "CatalogErrors".to_string(),
                    crate::jobs::Detail::Text(catalog_errors.join("\n")),
                ),
            ]
            .into_iter()
            .collect())
        };
        spawn_job(connection, &self.manager, self.gate.clone(), job, work).await
    }

    /// Removes releases beyond retention (unpinned, out of MFS, deploy
    /// directories deleted) and what no app keeps in Kubo, then runs Kubo's
    /// garbage collection when no other job runs; as a job (`Type`
    /// `vacuum`). No options. Polkit action `manage-pins`.
    async fn vacuum(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(&options, &[])?;
        let uid = authorize(&self.gate, &header, Action::ManagePins, &HashMap::new()).await?;
        let job = self.manager.jobs.create("vacuum", "", uid);
        let manager = self.manager.clone();
        let worker_job = job.clone();
        let work = async move {
            crate::update::vacuum(&manager, &worker_job)
                .await
                .map_err(|e| install_error(&e))
        };
        spawn_job(connection, &self.manager, self.gate.clone(), job, work).await
    }

    /// Sets the daemon's automatic update policy (`none`, `check`,
    /// `download`, `apply`; `""` returns to the configuration file's).
    /// Polkit action `configure`.
    async fn set_automatic_update_policy(
        &self,
        policy: String,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let parsed = match policy.as_str() {
            "" => None,
            p => Some(crate::updates::Policy::parse(p).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgs,
                    format!("unknown policy {p:?}: use none, check, download, apply or \"\""),
                )
            })?),
        };
        authorize(
            &self.gate,
            &header,
            Action::Configure,
            &HashMap::from([("policy", policy.as_str())]),
        )
        .await?;
        crate::update::set_automatic_policy(&self.manager, parsed)
            .await
            .map_err(|e| install_error(&e))
    }

    /// Makes the scheduler check every app now and act as the automatic
    /// update policies say (what `flatipfs-update.timer` runs); returns at
    /// once, the work shows as jobs and in `LastAutomaticCheck`. Polkit
    /// action `refresh`.
    async fn trigger_automatic_updates(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        authorize(&self.gate, &header, Action::Refresh, &HashMap::new()).await?;
        crate::update::trigger_automatic(&self.manager);
        Ok(())
    }

    /// Follows trusted remote `remote` as a mirror: this daemon's node
    /// keeps its store index, catalog, every current release and
    /// `history` past ones per app pinned and provided, synced every
    /// `mirror.interval` and at once (in the background; see
    /// `ListMirrors`). Options: `history` (u, at most 16; default
    /// `mirror.history`). Polkit action `mirror`. `NotFound` for a remote
    /// that is not trusted, `AlreadyInstalled` if it is mirrored already.
    async fn add_mirror(
        &self,
        remote: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        options::reject_unknown(&options, &["history"])?;
        let history = options::number(&options, "history")?;
        crate::mirror::validate(&remote, history).map_err(|e| mirror_error(&e))?;
        authorize(
            &self.gate,
            &header,
            Action::Mirror,
            &HashMap::from([("remote", remote.as_str())]),
        )
        .await?;
        crate::mirror::add(&self.manager, &remote, history)
            .await
            .map_err(|e| mirror_error(&e))
    }

    /// Stops mirroring `remote`; what the mirror pinned is unpinned
    /// (unless an installed app uses it). No options. Polkit action
    /// `mirror`. `NotFound` if it is not mirrored.
    async fn remove_mirror(
        &self,
        remote: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        options::reject_unknown(&options, &[])?;
        crate::mirror::validate(&remote, None).map_err(|e| mirror_error(&e))?;
        authorize(
            &self.gate,
            &header,
            Action::Mirror,
            &HashMap::from([("remote", remote.as_str())]),
        )
        .await?;
        crate::mirror::remove(&self.manager, &remote)
            .await
            .map_err(|e| mirror_error(&e))
    }

    /// The remotes this daemon mirrors: (remote, details). Details:
    /// `Added`, `LastSync` (t, 0: never), `Sequence` (t, the index
    /// sequence synced), `Releases` (t, release roots held), `Bytes` (t),
    /// `History` (t, past releases kept per app) and, when the last sync
    /// failed, `LastError` (s). Needs no authorization.
    async fn list_mirrors(&self) -> Result<Vec<(String, HashMap<String, OwnedValue>)>, Error> {
        let history = self.manager.config().mirror.history;
        let listed = crate::mirror::list(&self.manager).map_err(|e| mirror_error(&e))?;
        Ok(listed
            .into_iter()
            .map(|(name, m)| {
                let releases = m
                    .held
                    .iter()
                    .filter(|h| h.what != "index" && h.what != "catalog")
                    .count();
                let mut d = HashMap::from([
                    ("Added".to_string(), OwnedValue::from(m.added)),
                    ("LastSync".to_string(), OwnedValue::from(m.last_sync)),
                    ("Sequence".to_string(), OwnedValue::from(m.sequence)),
                    ("Releases".to_string(), OwnedValue::from(releases as u64)),
                    ("Bytes".to_string(), OwnedValue::from(m.bytes)),
                    (
                        "History".to_string(),
                        OwnedValue::from(m.history.unwrap_or(history) as u64),
                    ),
                ]);
                if let Some(e) = m.last_error {
                    d.insert(
                        "LastError".into(),
                        OwnedValue::try_from(Value::from(e)).expect("a string has no fd"),
                    );
                }
                (name, d)
            })
            .collect())
    }

    /// Lists `peer` (a peer ID, or a multiaddr ending in `/p2p/ID`) as a
    /// mirror of published remote `remote`: its store index names it in
    /// `peers` after this daemon's node, published at once. Returns the
    /// peer ID. No options. Polkit action `manage-remote-mirrors`.
    async fn add_remote_mirror(
        &self,
        remote: String,
        peer: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        let publisher = self
            .remote_mirror_publisher(&remote, &peer, &options, &header)
            .await?;
        publisher
            .add_mirror(&remote, &peer)
            .await
            .map_err(|e| remote_mirror_error(&e))
    }

    /// Stops listing mirror `peer` (its ID or an address ending in it) of
    /// published remote `remote`; the index is published at once. No
    /// options. Polkit action `manage-remote-mirrors`.
    async fn remove_remote_mirror(
        &self,
        remote: String,
        peer: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let publisher = self
            .remote_mirror_publisher(&remote, &peer, &options, &header)
            .await?;
        publisher
            .remove_mirror(&remote, &peer)
            .await
            .map_err(|e| remote_mirror_error(&e))
    }

    /// The mirror peers published remote `remote` lists: (peer ID,
    /// addresses). Needs no authorization.
    async fn list_remote_mirrors(
        &self,
        remote: String,
    ) -> Result<Vec<(String, Vec<String>)>, Error> {
        crate::remote_mirrors::validate(&remote, None).map_err(|e| remote_mirror_error(&e))?;
        crate::remote_mirrors::list(&self.manager.store(), &remote)
            .map(|peers| peers.into_iter().map(|p| (p.id, p.addrs)).collect())
            .map_err(|e| remote_mirror_error(&e))
    }

    /// The jobs running or still in their grace period, oldest first.
    /// Needs no authorization.
    async fn list_jobs(&self) -> Vec<OwnedObjectPath> {
        self.manager
            .jobs
            .live()
            .into_iter()
            .map(job::job_path)
            .collect()
    }

    /// The daemon's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The capabilities this daemon implements.
    #[zbus(property(emits_changed_signal = "const"))]
    fn features(&self) -> Vec<String> {
        FEATURES.iter().map(|f| f.to_string()).collect()
    }

    /// How the daemon sees its Kubo node.
    #[zbus(property)]
    fn kubo_status(&self) -> KuboStatus {
        self.kubo_status.clone()
    }

    /// What automatic updates do: `none`, `check`, `download`, `apply`.
    #[zbus(property)]
    fn automatic_update_policy(&self) -> String {
        self.scheduler.policy.clone()
    }

    /// When the scheduler last checked (seconds since the epoch; 0: never).
    #[zbus(property)]
    fn last_automatic_check(&self) -> u64 {
        self.scheduler.last_check
    }

    /// When it checks next (seconds since the epoch; 0: not planned).
    #[zbus(property)]
    fn next_automatic_check(&self) -> u64 {
        self.scheduler.next_check
    }

    /// A job finished: its id, object path, result (`success`, `failed`,
    /// `cancelled`) and, unless it succeeded, the error's name and message.
    /// The object stays readable for the configured grace period.
    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u64,
        path: OwnedObjectPath,
        result: &str,
        error_name: &str,
        error_message: &str,
    ) -> zbus::Result<()>;
}

/// Keeps the manager object's `KuboStatus` property (with
/// `PropertiesChanged`) in step with `status`.
pub async fn forward_kubo_status(
    connection: zbus::Connection,
    mut status: watch::Receiver<KuboStatus>,
) {
    let iface = match connection
        .object_server()
        .interface::<_, ManagerObject>(MANAGER_PATH)
        .await
    {
        Ok(iface) => iface,
        Err(e) => {
            warn!("manager object missing, KuboStatus will not update: {e}");
            return;
        }
    };
    while status.changed().await.is_ok() {
        let new = status.borrow_and_update().clone();
        let mut object = iface.get_mut().await;
        object.kubo_status = new;
        if let Err(e) = object.kubo_status_changed(iface.signal_emitter()).await {
            warn!("cannot emit PropertiesChanged for KuboStatus: {e}");
        }
    }
}

/// Keeps the manager object's scheduler properties (with
/// `PropertiesChanged`) in step with the scheduler.
pub async fn forward_scheduler(connection: zbus::Connection, manager: Arc<Manager>) {
    let mut info = manager
        .scheduler
        .info
        .get_or_init(|| watch::channel(Default::default()).0)
        .subscribe();
    let Ok(iface) = connection
        .object_server()
        .interface::<_, ManagerObject>(MANAGER_PATH)
        .await
    else {
        return;
    };
    loop {
        let new = info.borrow_and_update().clone();
        {
            let mut object = iface.get_mut().await;
            let old = std::mem::replace(&mut object.scheduler, new.clone());
            let e = iface.signal_emitter();
            let mut results = Vec::new();
            if old.policy != new.policy {
                results.push(object.automatic_update_policy_changed(e).await);
            }
            if old.last_check != new.last_check {
                results.push(object.last_automatic_check_changed(e).await);
            }
            if old.next_check != new.next_check {
                results.push(object.next_automatic_check_changed(e).await);
            }
            for r in results {
                if let Err(e) = r {
                    warn!("cannot emit the scheduler's PropertiesChanged: {e}");
                }
            }
        }
        if info.changed().await.is_err() {
            return;
        }
    }
}

/// Starts jobs for work begun below the D-Bus layer (the scheduler's
/// automatic updates): exports the job object and runs the work.
pub fn launcher(
    connection: zbus::Connection,
    manager: Arc<Manager>,
    gate: Gate,
) -> crate::updates::Launcher {
    Arc::new(move |job, work| {
        let (connection, manager, gate) = (connection.clone(), manager.clone(), gate.clone());
        tokio::spawn(async move {
            let work = async move { work.await.map_err(|e| install_error(&e)) };
            if let Err(e) = spawn_job(&connection, &manager, gate, job, work).await {
                warn!("cannot start an automatic job: {e}");
            }
        });
    })
}
