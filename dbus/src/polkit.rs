//! The polkit actions of flatipfs (`polkit/org.flatipfs.manager1.policy`).

/// A polkit action, `org.flatipfs.manager1.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Check remotes for new releases now.
    Refresh,
    /// Update an installed app to the newest release.
    Update,
    /// Move an installed app to a specific (possibly older) release.
    UpdateToVersion,
    /// Apply an update that grants the app new permissions.
    UpdatePermissions,
    /// Switch back to the previous release.
    Rollback,
    /// Install an app.
    Install,
    /// Uninstall an app.
    Uninstall,
    /// Pin, unpin and vacuum releases.
    ManagePins,
    /// Change or reload the daemon's configuration and update policy.
    Configure,
    /// Add or remove a remote (trust a publisher).
    TrustRemote,
    /// Publish a release to a remote.
    Publish,
    /// Cancel a job another user started.
    CancelOther,
    /// Record which parts of an app's files it reads at start-up.
    RecordStartup,
    /// Follow a remote as a mirror (keep its releases pinned and provided),
    /// or stop.
    Mirror,
    /// Change the mirror peers a published remote's store index lists.
    ManageRemoteMirrors,
}

impl Action {
    /// Every action, in the order of the policy file.
    pub const ALL: &'static [Action] = &[
        Action::Refresh,
        Action::Update,
        Action::UpdateToVersion,
        Action::UpdatePermissions,
        Action::Rollback,
        Action::Install,
        Action::Uninstall,
        Action::ManagePins,
        Action::Configure,
        Action::TrustRemote,
        Action::Publish,
        Action::CancelOther,
        Action::RecordStartup,
        Action::Mirror,
        Action::ManageRemoteMirrors,
    ];

    /// The full polkit action id.
    pub fn id(self) -> &'static str {
        match self {
            Action::Refresh => "org.flatipfs.manager1.refresh",
            Action::Update => "org.flatipfs.manager1.update",
            Action::UpdateToVersion => "org.flatipfs.manager1.update-to-version",
            Action::UpdatePermissions => "org.flatipfs.manager1.update-permissions",
            Action::Rollback => "org.flatipfs.manager1.rollback",
            Action::Install => "org.flatipfs.manager1.install",
            Action::Uninstall => "org.flatipfs.manager1.uninstall",
            Action::ManagePins => "org.flatipfs.manager1.manage-pins",
            Action::Configure => "org.flatipfs.manager1.configure",
            Action::TrustRemote => "org.flatipfs.manager1.trust-remote",
            Action::Publish => "org.flatipfs.manager1.publish",
            Action::CancelOther => "org.flatipfs.manager1.cancel-other",
            Action::RecordStartup => "org.flatipfs.manager1.record-startup",
            Action::Mirror => "org.flatipfs.manager1.mirror",
            Action::ManageRemoteMirrors => "org.flatipfs.manager1.manage-remote-mirrors",
        }
    }
}
