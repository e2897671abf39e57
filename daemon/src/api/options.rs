//! Reading `a{sv}` options: typed, named, unknown keys refused.

use std::collections::HashMap;
use std::path::PathBuf;

use flatipfs_dbus::{Error, ErrorKind};
use zbus::zvariant::OwnedValue;

use crate::flatpak::FlatpakRef;
use crate::publish::{self, Request, Source, StartupItem};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgs, message)
}

/// Refuses any key not in `known`.
pub fn reject_unknown(options: &HashMap<String, OwnedValue>, known: &[&str]) -> Result<(), Error> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(invalid(format!(
            "unknown option {key:?}; known options: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
        None => Ok(()),
    }
}

pub fn string(options: &HashMap<String, OwnedValue>, key: &str) -> Result<Option<String>, Error> {
    options
        .get(key)
        .map(|v| {
            String::try_from(v.try_clone().map_err(|e| invalid(e.to_string()))?)
                .map_err(|_| invalid(format!("option {key:?} must be a string (s)")))
        })
        .transpose()
}

/// A boolean option; absent is false.
pub fn boolean(options: &HashMap<String, OwnedValue>, key: &str) -> Result<bool, Error> {
    options
        .get(key)
        .map(|v| {
            bool::try_from(v).map_err(|_| invalid(format!("option {key:?} must be a boolean (b)")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// A boolean option that may be absent.
pub fn optional_boolean(
    options: &HashMap<String, OwnedValue>,
    key: &str,
) -> Result<Option<bool>, Error> {
    options
        .get(key)
        .map(|v| {
            bool::try_from(v).map_err(|_| invalid(format!("option {key:?} must be a boolean (b)")))
        })
        .transpose()
}

/// An unsigned 32-bit option that may be absent.
pub fn number(options: &HashMap<String, OwnedValue>, key: &str) -> Result<Option<u32>, Error> {
    options
        .get(key)
        .map(|v| {
            u32::try_from(v).map_err(|_| invalid(format!("option {key:?} must be a number (u)")))
        })
        .transpose()
}

/// A list-of-strings option; absent is empty.
pub fn string_list(options: &HashMap<String, OwnedValue>, key: &str) -> Result<Vec<String>, Error> {
    strings(options, key)
}

fn strings(options: &HashMap<String, OwnedValue>, key: &str) -> Result<Vec<String>, Error> {
    options
        .get(key)
        .map(|v| {
            Vec::<String>::try_from(v.try_clone().map_err(|e| invalid(e.to_string()))?)
                .map_err(|_| invalid(format!("option {key:?} must be a list of strings (as)")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// A publication's startup set: `startup-set` (as, whole files) or
/// `startup-ranges` (a(stt): path, offset, length), not both.
fn startup_set(options: &HashMap<String, OwnedValue>) -> Result<Vec<StartupItem>, Error> {
    let whole = strings(options, "startup-set")?;
    let ranges = options
        .get("startup-ranges")
        .map(|v| {
            Vec::<(String, u64, u64)>::try_from(v.try_clone().map_err(|e| invalid(e.to_string()))?)
                .map_err(|_| {
                    invalid("option \"startup-ranges\" must be a list of (path, offset, length) (a(stt))".into())
                })
        })
        .transpose()?
        .unwrap_or_default();
    if !whole.is_empty() && !ranges.is_empty() {
        return Err(invalid(
            "\"startup-set\" and \"startup-ranges\" exclude each other".into(),
        ));
    }
    let items: Vec<StartupItem> = whole
        .into_iter()
        .map(|path| StartupItem { path, range: None })
        .chain(
            ranges
                .into_iter()
                .map(|(path, offset, length)| StartupItem {
                    path,
                    range: Some((offset, length)),
                }),
        )
        .collect();
    if let Some(bad) = items
        .iter()
        .find(|i| !crate::release::safe_relative_path(&i.path))
    {
        return Err(invalid(format!(
            "startup set path {:?} must be relative to deploy/",
            bad.path
        )));
    }
    Ok(items)
}

/// The `Publish` call's arguments, validated without touching the disk.
pub fn publish_request(
    path: &str,
    options: &HashMap<String, OwnedValue>,
) -> Result<Request, Error> {
    reject_unknown(
        options,
        &[
            "remote",
            "ref",
            "version",
            "arch",
            "branch",
            "startup-set",
            "startup-ranges",
            "pack",
            "deltas",
            "delta-releases",
        ],
    )?;
    if !path.starts_with('/') || path.contains('\0') {
        return Err(invalid(format!("path {path:?} must be absolute")));
    }
    let remote = string(options, "remote")?
        .ok_or_else(|| invalid("option \"remote\" is required".into()))?;
    if !publish::valid_remote_name(&remote) {
        return Err(invalid(
            publish::PublishError::BadRemoteName(remote).to_string(),
        ));
    }
    let reference = string(options, "ref")?;
    if let Some(r) = &reference {
        if FlatpakRef::parse(r).is_none() {
            return Err(invalid(
                publish::PublishError::BadRef(r.clone()).to_string(),
            ));
        }
    }
    let version = string(options, "version")?;
    if let Some(v) = &version {
        if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
            return Err(invalid(format!("invalid version {v:?}")));
        }
    }
    let plain = |key: &str, v: &Option<String>| -> Result<(), Error> {
        match v {
            Some(v)
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                Err(invalid(format!("invalid {key} {v:?}")))
            }
            _ => Ok(()),
        }
    };
    let arch = string(options, "arch")?;
    let branch = string(options, "branch")?;
    plain("arch", &arch)?;
    plain("branch", &branch)?;
    let startup_set = startup_set(options)?;
    let encodings = publish::EncodingChoice {
        pack: optional_boolean(options, "pack")?,
        deltas: optional_boolean(options, "deltas")?,
        delta_releases: match number(options, "delta-releases")? {
            Some(n) if n > 16 => {
                return Err(invalid(format!(
                    "delta-releases {n}: at most 16 (the store index keeps no more history)"
                )))
            }
            n => n.map(|n| n as usize),
        },
    };
    let path = PathBuf::from(path);
    let source = match reference {
        Some(reference) => Source::Repo {
            repo: path,
            reference,
        },
        None => Source::DeployDir(path),
    };
    Ok(Request {
        remote,
        source,
        version,
        arch,
        branch,
        startup_set,
        encodings,
    })
}
