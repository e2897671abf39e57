//! Startup sets: `flatipfsctl startup-set record`, and reading the startup
//! set file `publish --startup-set` takes.
//!
//! The file lists, one per line in the order the app reads them at start-up,
//! either a whole file (`PATH`, relative to the deploy directory) or a range
//! of one (`PATH<TAB>OFFSET<TAB>LENGTH`, what a recording writes); blank
//! lines and lines starting with `#` are ignored. Paths of a release never
//! hold a tab (they hold no control character).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use flatipfs_dbus::proxy::ManagerProxy;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use zbus::zvariant::Value;

use crate::apps::{call_app, describe, find};
use crate::exit::{self, Failure};

/// A startup set read from a file, as the `Publish` options carry it.
#[derive(Debug, PartialEq)]
pub enum StartupSet {
    /// Whole files (option `startup-set`).
    Files(Vec<String>),
    /// Ranges (option `startup-ranges`).
    Ranges(Vec<(String, u64, u64)>),
}

/// Parses a startup set file (see the module comment).
pub fn parse(text: &str) -> Result<StartupSet, String> {
    let mut files = Vec::new();
    let mut ranges = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_matches(|c| c == ' ' || c == '\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            [path] => files.push(path.to_string()),
            [path, offset, length] => {
                let number = |text: &str, what: &str| {
                    text.parse::<u64>()
                        .map_err(|_| format!("line {}: invalid {what} {text:?}", number + 1))
                };
                ranges.push((
                    path.to_string(),
                    number(offset, "offset")?,
                    number(length, "length")?,
                ));
            }
            _ => {
                return Err(format!(
                    "line {}: expected PATH or PATH<TAB>OFFSET<TAB>LENGTH",
                    number + 1
                ))
            }
        }
    }
    match (files.is_empty(), ranges.is_empty()) {
        (_, true) => Ok(StartupSet::Files(files)),
        (true, false) => Ok(StartupSet::Ranges(ranges)),
        (false, false) => Err(
            "the file mixes whole files (PATH) and ranges (PATH<TAB>OFFSET<TAB>LENGTH); use one form"
                .into(),
        ),
    }
}

/// The text of a recorded startup set.
fn render(id: &str, version: &str, ranges: &[(String, u64, u64)]) -> String {
    let bytes: u64 = ranges.iter().map(|r| r.2).sum();
    let mut text = format!(
        "# startup set of {id} {version}: {} ranges, {bytes} bytes, in first-access order\n# PATH<TAB>OFFSET<TAB>LENGTH, for `flatipfsctl publish --startup-set`\n",
        ranges.len()
    );
    for (path, offset, length) in ranges {
        text.push_str(&format!("{path}\t{offset}\t{length}\n"));
    }
    text
}

/// `flatipfsctl startup-set record APP_ID`: the daemon records through a
/// fresh mount while this runs `flatpak run APP_ID ARGS` as the calling
/// user for at most `seconds` (the app is stopped then if still running).
pub async fn record(
    json: bool,
    manager: &ManagerProxy<'_>,
    id: &str,
    seconds: u32,
    output: Option<&Path>,
    args: &[String],
) -> Result<(), Failure> {
    let app = find(manager, id).await?;
    let version = describe(&app).await?.version;
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    // The daemon's own limit, should this process die before it stops.
    options.insert("seconds", Value::from(seconds.saturating_add(30).min(600)));
    call_app::<_, ()>(manager, id, "StartRecording", &(options,)).await?;
    let ran = run_app(id, args, Duration::from_secs(seconds.into())).await;
    let (ranges, truncated): (Vec<(String, u64, u64)>, bool) =
        call_app(manager, id, "StopRecording", &()).await?;
    let status = ran?;
    if !status.success() && status.signal().is_none() {
        eprintln!("warning: {id} exited with {status} while it was recorded");
    }
    if truncated {
        eprintln!(
            "warning: the app read more than a startup set may hold; later reads were left out"
        );
    }
    if ranges.is_empty() {
        eprintln!("warning: the app read nothing through its mount while it was recorded");
    }
    let text = render(id, &version, &ranges);
    if let Some(path) = output {
        std::fs::write(path, &text)
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))?;
    }
    let bytes: u64 = ranges.iter().map(|r| r.2).sum();
    if json {
        let list: Vec<_> = ranges
            .iter()
            .map(|(path, offset, length)| json!({"path": path, "offset": offset, "length": length}))
            .collect();
        println!(
            "{}",
            json!({ "app": id, "version": version, "ranges": list, "bytes": bytes, "truncated": truncated })
        );
    } else if let Some(path) = output {
        println!(
            "recorded {} ranges ({bytes} bytes) of {id} {version} into {}",
            ranges.len(),
            path.display()
        );
    } else {
        // The list itself, as `publish --startup-set` reads it.
        std::print!("{text}");
    }
    Ok(())
}

/// Runs `flatpak run ID ARGS` (its output on stderr, so that stdout stays
/// the list) until it exits or `limit` passes, then stops its process group.
async fn run_app(
    id: &str,
    args: &[String],
    limit: Duration,
) -> Result<std::process::ExitStatus, Failure> {
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Failure::usage(format!("cannot pass stderr on: {e}")))?;
    let mut child = tokio::process::Command::new("flatpak")
        .arg("run")
        .arg(id)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure {
            code: exit::FAILURE,
            name: None,
            message: format!("cannot run flatpak: {e}"),
            hint: Some("install the Debian package `flatpak`".into()),
        })?;
    if let Ok(status) = tokio::time::timeout(limit, child.wait()).await {
        return status.map_err(|e| Failure::usage(format!("cannot wait for flatpak: {e}")));
    }
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(status) => status.map_err(|e| Failure::usage(format!("cannot wait for flatpak: {e}"))),
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            child
                .wait()
                .await
                .map_err(|e| Failure::usage(format!("cannot wait for flatpak: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_files_and_ranges_are_read_but_not_mixed() {
        assert_eq!(
            parse("# comment\nfiles/a\n\nfiles/b c\n").unwrap(),
            StartupSet::Files(vec!["files/a".into(), "files/b c".into()])
        );
        assert_eq!(
            parse("files/a\t0\t10\nfiles/b c\t4096\t8192\n").unwrap(),
            StartupSet::Ranges(vec![
                ("files/a".into(), 0, 10),
                ("files/b c".into(), 4096, 8192)
            ])
        );
        assert!(parse("files/a\nfiles/b\t0\t1\n").is_err());
        assert!(parse("files/a\t0\n").unwrap_err().contains("line 1"));
        assert!(parse("files/a\t-1\t5\n").is_err());
    }

    #[test]
    fn a_recording_reads_back_as_the_same_ranges() {
        let ranges = vec![
            ("files/bin/app".to_string(), 0, 4096),
            ("files/lib/x.so".into(), 8192, 100),
        ];
        assert_eq!(
            parse(&render("org.test.Hello", "1", &ranges)).unwrap(),
            StartupSet::Ranges(ranges)
        );
    }
}
