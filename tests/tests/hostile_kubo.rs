//! Issue 9, "Kubo closed to everyone but the daemon" and "verified bytes
//! and restart-proof mounts", against real components: the embedded node
//! is reachable by root only (unix socket in a 0700 directory, no TCP API),
//! runs as its own user without capabilities, its address is shown to
//! nobody, mounts survive its restart, and a manifest that does not
//! describe its release's `deploy/` tree is refused.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use flatipfs_dbus::proxy::ManagerProxyBlocking;
use flatipfs_tests::ctl::{
    fails_with, flatipfsctl, last_json, ok_json, run_hello, run_hello_as_user,
};
use flatipfs_tests::embedded::{self, KUBO_USER};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::trees::assert_same_tree;
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{StackOptions, TestStack};
use nix::unistd::{ForkResult, User};
use serde_json::Value;

/// Bounds waits so a broken run fails instead of hanging; never asserted on.
const LIMIT: Duration = Duration::from_secs(90);

/// Connects to `socket` from a child process running as `user` (its uid
/// and gid, no supplementary groups); the errno, or 0 when it connected.
fn connect_as(user: &str, socket: &Path) -> i32 {
    let account = User::from_name(user).unwrap().unwrap();
    let path = socket.to_owned();
    // SAFETY: the child makes system calls only, then _exit.
    match unsafe { nix::unistd::fork() }.unwrap() {
        ForkResult::Child => {
            let code = if nix::unistd::setgroups(&[]).is_err()
                || nix::unistd::setgid(account.gid).is_err()
                || nix::unistd::setuid(account.uid).is_err()
            {
                100
            } else {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(_) => 0,
                    Err(e) => e.raw_os_error().unwrap_or(101),
                }
            };
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("the connecting child ended with {other:?}"),
        },
    }
}

/// The TCP addresses process `pid` listens on (from /proc/net/tcp{,6} and
/// its socket descriptors), with wildcard addresses made loopback.
fn tcp_listeners(pid: i32) -> Vec<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" || !inodes.iter().any(|i| i == fields[9]) {
                continue;
            }
            let (addr, port) = fields[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let ip = if v6 {
                let mut bytes = [0u8; 16];
                for word in 0..4 {
                    let w = u32::from_str_radix(&addr[word * 8..word * 8 + 8], 16).unwrap();
                    bytes[word * 4..word * 4 + 4].copy_from_slice(&w.to_le_bytes());
                }
                let ip = Ipv6Addr::from(bytes);
                if ip.is_unspecified() {
                    IpAddr::V6(Ipv6Addr::LOCALHOST)
                } else {
                    IpAddr::V6(ip)
                }
            } else {
                let ip = Ipv4Addr::from(u32::from_str_radix(addr, 16).unwrap().to_le_bytes());
                if ip.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V4(ip)
                }
            };
            found.push(SocketAddr::new(ip, port));
        }
    }
    found
}

/// Whether a Kubo RPC API answers `version` at `addr`.
fn answers_kubo_api(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
    let request = format!(
        "POST /api/v0/version HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.take(64 << 10).read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).contains("\"Version\"")
}

/// `/proc/PID/status` as key → value.
fn proc_status(pid: i32) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_embedded_node_is_closed_to_everyone_but_the_daemon() {
    // Node 1 is an ordinary node with a TCP API, to show that the probe
    // below recognises an open API when there is one.
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        embedded_kubo: true,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    stack.wait_kubo_usable().unwrap();
    let kubo_user = User::from_name(KUBO_USER).unwrap().unwrap();
    let state = stack.dir.join("state");
    let socket = embedded::socket(&state);

    // The socket, in a directory only its user (and root) can enter.
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket(), "{}", socket.display());
    let dir = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    assert_eq!(dir.uid(), kubo_user.uid.as_raw());
    let repo = std::fs::metadata(state.join("kubo")).unwrap();
    assert_eq!(
        repo.uid(),
        kubo_user.uid.as_raw(),
        "the repo is the Kubo user's"
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(state.join("kubo/config")).unwrap()).unwrap();
    assert_eq!(
        config["Addresses"]["API"],
        format!("/unix{}", socket.display())
    );
    assert_eq!(config["Addresses"]["Gateway"], serde_json::json!([]));

    // A plain user cannot even connect; root (like the daemon) can.
    assert_eq!(
        connect_as(PLAIN_USER, &socket),
        nix::libc::EACCES,
        "a plain user must not reach the embedded node's socket"
    );
    let number = stack.kubo.len();
    let id = stack.ipfs(number, &["id", "-f", "<id>"]).unwrap();
    assert!(id.starts_with("12D3") || id.starts_with('Q'), "{id}");

    // The process: the Kubo user, no groups, no capabilities, no_new_privs.
    let pid = embedded::process(&stack).unwrap();
    let status = proc_status(pid);
    let uid = kubo_user.uid.to_string();
    let gid = kubo_user.gid.to_string();
    assert_eq!(
        status["Uid"].split_whitespace().collect::<Vec<_>>(),
        [uid.as_str(); 4],
        "{status:?}"
    );
    assert_eq!(
        status["Gid"].split_whitespace().collect::<Vec<_>>(),
        [gid.as_str(); 4],
        "{status:?}"
    );
    assert_eq!(status["Groups"], "", "{status:?}");
    for cap in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status[cap], "0000000000000000", "{cap}: {status:?}");
    }
    assert_eq!(status["NoNewPrivs"], "1", "{status:?}");

    // No TCP port of the node serves the API (the probe does find node 1's).
    let node1 = &stack.kubo[0].api;
    let port: u16 = node1.rsplit('/').next().unwrap().parse().unwrap();
    assert!(
        answers_kubo_api(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        "the probe must recognise node 1's API at {node1}"
    );
    let listeners = tcp_listeners(pid);
    assert!(
        !listeners.is_empty(),
        "the node listens on its swarm port at least"
    );
    for addr in listeners {
        assert!(
            !answers_kubo_api(addr),
            "the embedded node serves its API on TCP {addr}"
        );
    }

    // Its address is shown to nobody: not to a plain user, not on the bus.
    let out = flatipfsctl(&stack, Some(PLAIN_USER), &["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let shown = last_json(&out);
    assert_eq!(shown["kubo"]["embedded"], true, "{shown}");
    assert_eq!(shown["kubo"]["usable"], true, "{shown}");
    assert_eq!(shown["kubo"]["api"], "", "{shown}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("/unix") && !text.contains("api.sock"),
        "{text}"
    );
    let plain = flatipfsctl(&stack, Some(PLAIN_USER), &["status"]);
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert!(plain.contains("embedded node 0.43.1,"), "{plain}");
    assert!(!plain.contains(" at "), "{plain}");
    let manager = ManagerProxyBlocking::new(&stack.bus().unwrap()).unwrap();
    assert_eq!(manager.kubo_status().unwrap().api, "");
}

#[test]
fn reads_through_live_mounts_go_on_after_the_embedded_node_restarts() {
    let pair = Pair::up_embedded("");
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["state"], "installed", "{installed}");
    let mount_point = installed["mount_point"].as_str().unwrap().to_string();
    let mount = Path::new(&mount_point);
    // One read before the restart; everything else is read only after it,
    // so the kernel's cache cannot answer for the node.
    let script = std::fs::read_to_string(mount.join("bin/hello.sh")).unwrap();
    assert!(script.contains("version 1"), "{script}");

    let daemon = client.process("flatipfsd").unwrap();
    let first = embedded::process(client).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut restarted = || {
        let now = embedded::ipfs_children(daemon.pid);
        Ok(now.len() == 1 && now[0] != first)
    };
    wait_for("a restarted embedded node", LIMIT, &mut restarted).unwrap();
    client.wait_kubo_usable().unwrap();

    // The same daemon, the same mounts: every file reads as published, and
    // the app (and its runtime, mounted the same way) runs.
    assert_eq!(client.process("flatipfsd").unwrap().pid, daemon.pid);
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    assert_same_tree(&original.join("files"), mount);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(
        run_hello_as_user(client),
        "Hello from org.test.Hello version 1"
    );
}

/// Index of the first entry for which `pick` holds.
fn entry(manifest: &Value, pick: impl Fn(&Value) -> bool) -> usize {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(pick)
        .expect("the test app has such an entry")
}

fn path_is(path: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["path"] == path
}

#[test]
fn a_manifest_that_does_not_describe_its_deploy_tree_is_refused() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    let release = pair.publish_v1();
    let client = &pair.client;
    // The runtime comes from the remote; the hand-made apps are installed
    // by release root, which needs the runtime present.
    let runtime = ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    assert_eq!(runtime["state"], "installed", "{runtime}");
    let app_dir = client.installation().join("app/org.test.Hello");

    type Edit = fn(&mut Value);
    let attacks: [(&str, Edit, &str); 7] = [
        (
            "an entry naming another file's CID",
            |m| {
                let script = entry(m, path_is("files/bin/hello.sh"));
                let other = entry(m, |e| {
                    e["type"] == "file" && e["path"] != "files/bin/hello.sh" && e["size"] != 0
                });
                m["entries"][script]["cid"] = m["entries"][other]["cid"].clone();
                m["entries"][script]["size"] = m["entries"][other]["size"].clone();
            },
            "deploy/files/bin/hello.sh is",
        ),
        (
            "a deploy field that is not the release's deploy/",
            |m| {
                let files = entry(m, path_is("files"));
                m["deploy"] = m["entries"][files]["cid"].clone();
            },
            "deploy field says",
        ),
        (
            "a file the manifest leaves out",
            |m| {
                let script = entry(m, path_is("files/bin/hello.sh"));
                m["entries"].as_array_mut().unwrap().remove(script);
            },
            "deploy/files/bin/hello.sh is in the release but not in the manifest",
        ),
        (
            "a file the release does not have",
            |m| {
                let script = entry(m, path_is("files/bin/hello.sh"));
                let mut extra = m["entries"][script].clone();
                extra["path"] = "files/bin/extra.sh".into();
                m["entries"].as_array_mut().unwrap().push(extra);
            },
            "deploy/files/bin/extra.sh is in the manifest but not in the release",
        ),
        (
            "a symlink pointing elsewhere",
            |m| {
                let link = entry(m, path_is("files/bin/hello"));
                m["entries"][link]["target"] = "/usr/bin/sh".into();
            },
            "deploy/files/bin/hello points at",
        ),
        (
            "a file of another size",
            |m| {
                let script = entry(m, path_is("files/bin/hello.sh"));
                m["entries"][script]["size"] = 1_000_000.into();
            },
            "deploy/files/bin/hello.sh has",
        ),
        (
            "a file shown as a directory",
            |m| {
                let script = entry(m, path_is("files/bin/hello.sh"));
                m["entries"][script]["type"] = "dir".into();
                m["entries"][script]["size"] = 0.into();
            },
            "deploy/files/bin/hello.sh is a file in the release, a directory in the manifest",
        ),
    ];
    for (what, edit, says) in attacks {
        let root = pair.handmade(&release, edit);
        let source = format!("/ipfs/{root}");
        let error = fails_with(
            client,
            &["install", "--json", &source],
            "VerificationFailed",
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{what}: {error}");
        // Nothing of it is left: no record, no deploy, no mount, no cached
        // manifest; the runtime is untouched.
        let info = flatipfsctl(client, None, &["info", "org.test.Hello"]);
        assert_eq!(info.status.code(), Some(3), "{what}: {info:?}");
        assert!(!app_dir.exists(), "{what}: {} is left", app_dir.display());
        let cached = client.dir.join(format!("state/releases/{root}.json"));
        assert!(!cached.exists(), "{what}: {} is left", cached.display());
        let runtime = ok_json(client, &["info", "--json", "org.test.Platform"]);
        assert_eq!(runtime["state"], "installed", "{what}: {runtime}");
    }

    // The honest release installs and runs after all of that.
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["release"], release.as_str(), "{installed}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let marker = client
        .dir
        .join(format!("state/releases/{release}.verified"));
    assert!(marker.exists(), "the check is recorded for restarts");
}

#[test]
fn an_older_root_owned_repo_with_a_tcp_api_is_closed_on_the_next_start() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 0,
        embedded_kubo: true,
        ..Default::default()
    })
    .unwrap();
    stack.wait_kubo_usable().unwrap();
    // What an older flatipfsd left: a repo owned by root, API and gateway
    // on loopback TCP.
    stack
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    let repo = stack.dir.join("state/kubo");
    let config_path = repo.join("config");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["Addresses"]["API"] = "/ip4/127.0.0.1/tcp/0".into();
    config["Addresses"]["Gateway"] = "/ip4/127.0.0.1/tcp/0".into();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", "root:root"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(chown.success());

    stack.start_daemon().unwrap();
    stack.wait_kubo_usable().unwrap();
    let kubo_user = User::from_name(KUBO_USER).unwrap().unwrap();
    for path in [
        repo.clone(),
        config_path.clone(),
        repo.join("datastore_spec"),
    ] {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.uid(), kubo_user.uid.as_raw(), "{}", path.display());
    }
    let config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    let socket = embedded::socket(&stack.dir.join("state"));
    assert_eq!(
        config["Addresses"]["API"],
        format!("/unix{}", socket.display())
    );
    assert_eq!(config["Addresses"]["Gateway"], serde_json::json!([]));
    let pid = embedded::process(&stack).unwrap();
    for addr in tcp_listeners(pid) {
        assert!(
            !answers_kubo_api(addr),
            "the embedded node serves its API (or gateway) on TCP {addr}"
        );
    }

    // An administrator's `ipfs config` run as root with the node stopped
    // leaves a root-owned config, unreadable by the Kubo user: the next
    // start gives it back.
    stack
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    std::os::unix::fs::chown(&config_path, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    stack.start_daemon().unwrap();
    stack.wait_kubo_usable().unwrap();
    let meta = std::fs::metadata(&config_path).unwrap();
    assert_eq!(meta.uid(), kubo_user.uid.as_raw());
}

#[test]
fn a_missing_kubo_user_stops_the_daemon_naming_the_user_and_the_fix() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 0,
        daemon: false,
        ..Default::default()
    })
    .unwrap();
    let config = stack.dir.join("nouser.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[kubo]\nbinary = \"{}\"\nuser = \"flatipfs-t-nokubo\"\n[installation]\nflatpak_config_dir = \"{}\"\n",
            stack.dir.join("state").display(),
            flatipfs_tests::paths::kubo_binary().unwrap().display(),
            stack.flatpak_config_dir().display()
        ),
    )
    .unwrap();
    let out = stack
        .command(flatipfs_tests::paths::binary("flatipfsd").unwrap())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"flatipfs-t-nokubo\"") && stderr.contains("useradd --system"),
        "{stderr}"
    );
    assert!(
        !stack.dir.join("state/kubo/config").exists(),
        "no repository is made for a user that does not exist"
    );
}

#[test]
fn an_update_whose_manifest_does_not_describe_its_tree_leaves_the_current_release() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    let release = pair.publish_v1();
    let client = &pair.client;
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["release"], release.as_str(), "{installed}");

    // The index offers a "newer" release whose manifest names another
    // file's CID for the app's script.
    let root = pair.handmade(&release, |m| {
        let script = entry(m, path_is("files/bin/hello.sh"));
        let other = entry(m, |e| {
            e["type"] == "file" && e["path"] != "files/bin/hello.sh" && e["size"] != 0
        });
        m["entries"][script]["cid"] = m["entries"][other]["cid"].clone();
        m["entries"][script]["size"] = m["entries"][other]["size"].clone();
        m["version"] = "1.1".into();
    });
    pair.publish_handmade_index(|index| {
        let app = &mut index["apps"]["org.test.Hello"];
        app["release"] = root.clone().into();
        app["version"] = "1.1".into();
        app["sequence"] = (app["sequence"].as_u64().unwrap() + 1).into();
        index["sequence"] = (index["sequence"].as_u64().unwrap() + 1).into();
    });

    let error = fails_with(
        client,
        &["update", "--json", "org.test.Hello"],
        "VerificationFailed",
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("deploy/files/bin/hello.sh is"), "{error}");
    // The installed release is current, active and runs; nothing of the
    // refused one is left.
    let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["release"], release.as_str(), "{info}");
    assert_eq!(info["state"], "installed", "{info}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let cached = client.dir.join(format!("state/releases/{root}.json"));
    assert!(!cached.exists(), "{} is left", cached.display());
    let deploys: Vec<_> = std::fs::read_dir(client.installation().join(&pair.app_ref))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert_eq!(
        deploys.len(),
        1,
        "one deployment, the current one: {deploys:?}"
    );
}

#[test]
fn mount_release_refuses_a_manifest_that_does_not_describe_its_tree() {
    use flatipfs_tests::paths;
    use flatipfs_tests::trees::mounted_options;
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let api = pair.publisher.kubo_node(1).unwrap().api.clone();
    let mount_release = |root: &str, mountpoint: &Path| {
        let mut command = std::process::Command::new(paths::binary("flatipfsd").unwrap());
        command
            .args(["mount-release", "--kubo-api", &api, root])
            .arg(mountpoint);
        command
    };
    // A manifest that gives hello.sh another size: refused before
    // anything is mounted, naming the path.
    let root = pair.handmade(&release, |m| {
        let script = entry(m, path_is("files/bin/hello.sh"));
        m["entries"][script]["size"] = 1_000_000.into();
    });
    let lying = pair.publisher.dir.join("lying");
    std::fs::create_dir_all(&lying).unwrap();
    let mut child = mount_release(&root, &lying)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Without the check it would mount and serve until stopped.
    let mut exited = || Ok(child.try_wait()?.is_some());
    let ended = wait_for("mount-release to refuse the release", LIMIT, &mut exited);
    if ended.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ended.unwrap();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the release is refused")
            && stderr.contains("deploy/files/bin/hello.sh has"),
        "{stderr}"
    );
    assert!(mounted_options(&lying).is_none());
    assert_eq!(std::fs::read_dir(&lying).unwrap().count(), 0);

    // The genuine release passes the same check and is served.
    let honest = pair.publisher.dir.join("honest");
    std::fs::create_dir_all(&honest).unwrap();
    let _serving = pair
        .publisher
        .start_process("mount-honest", mount_release(&release, &honest))
        .unwrap();
    let mut mounted = || Ok(mounted_options(&honest).is_some());
    wait_for("the honest release mount", LIMIT, &mut mounted).unwrap();
    assert!(honest.join("bin/hello.sh").is_file());
}
