//! The foundation against real components: the daemon on a private system
//! bus with a real polkitd, real Kubo nodes, the shipped bus policy, polkit
//! policy and rules, and the systemd unit.

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use flatipfs_dbus::proxy::ManagerProxyBlocking;
use flatipfs_dbus::{KuboStatus, BUS_NAME, MANAGER_INTERFACE, MANAGER_PATH};
use flatipfs_tests::ctl::flatipfsctl;
use flatipfs_tests::embedded::ipfs_children;
use flatipfs_tests::paths;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::users::{self, ADMIN_USER, CHALLENGED_USER, PLAIN_USER};
use flatipfs_tests::{require_root, Stack, StackOptions, TestStack};
use serde_json::Value;

/// Bounds waits so a broken run fails instead of hanging; never asserted on.
const LIMIT: Duration = Duration::from_secs(60);

fn one_node() -> StackOptions {
    StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    }
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn daemon_owns_its_name_and_no_unprivileged_process_can() {
    let stack = TestStack::up(&one_node()).unwrap();
    assert!(stack.name_has_owner(BUS_NAME).unwrap());
    users::ensure_test_users().unwrap();

    // Stop the daemon so the name is free, then let a plain user try to take it.
    stack
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(15))
        .unwrap();
    assert!(!stack.name_has_owner(BUS_NAME).unwrap());
    paths::system_program("/usr/bin/dbus-send", "dbus-bin").unwrap();
    let mut claim = users::as_user(PLAIN_USER, "/usr/bin/dbus-send").unwrap();
    claim
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .args([
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
        ])
        .args([
            "org.freedesktop.DBus.RequestName",
            &format!("string:{BUS_NAME}"),
            "uint32:0",
        ]);
    let out = users::output(&mut claim).unwrap();
    assert!(!out.status.success(), "a plain user owned {BUS_NAME}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("org.freedesktop.DBus.Error.AccessDenied")
            && stderr.contains("not allowed to own"),
        "unexpected refusal: {stderr}"
    );
    assert!(!stack.name_has_owner(BUS_NAME).unwrap());

    // Root may (the policy's other half), and the daemon comes back.
    stack.start_daemon().unwrap();
    assert!(stack.name_has_owner(BUS_NAME).unwrap());
}

#[test]
fn running_daemon_introspects_as_the_committed_xml() {
    let stack = TestStack::up(&one_node()).unwrap();
    let bus = stack.bus().unwrap();
    let introspectable = zbus::blocking::fdo::IntrospectableProxy::builder(&bus)
        .destination(BUS_NAME)
        .unwrap()
        .path(MANAGER_PATH)
        .unwrap()
        .build()
        .unwrap();
    flatipfs_tests::introspection::assert_matches_committed(
        &bus,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        flatipfs_dbus::MANAGER_INTROSPECTION_XML,
    );
    let live = introspectable.introspect().unwrap();
    let live = zbus_xml::Node::from_reader(live.as_bytes()).unwrap();
    let others: Vec<String> = live
        .interfaces()
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    assert!(
        others.contains(&"org.freedesktop.DBus.ObjectManager".to_string()),
        "{others:?}"
    );
}

#[test]
fn reload_config_is_gated_by_polkit() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        test_polkit_rules: true,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();

    let root = flatipfsctl(&stack, None, &["reload-config", "--json"]);
    assert!(root.status.success(), "root: {root:?}");
    assert_eq!(json_of(&root)["result"], "done");

    let plain = flatipfsctl(&stack, Some(PLAIN_USER), &["reload-config", "--json"]);
    assert_eq!(plain.status.code(), Some(4), "plain user: {plain:?}");
    assert_eq!(
        json_of(&plain)["error"]["name"],
        "org.freedesktop.DBus.Error.AccessDenied"
    );

    let admin = flatipfsctl(&stack, Some(ADMIN_USER), &["reload-config", "--json"]);
    assert!(admin.status.success(), "admin-group user: {admin:?}");

    let challenged = flatipfsctl(&stack, Some(CHALLENGED_USER), &["reload-config", "--json"]);
    assert_eq!(
        challenged.status.code(),
        Some(4),
        "challenged user: {challenged:?}"
    );
    assert_eq!(
        json_of(&challenged)["error"]["name"],
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    );
}

#[test]
fn reload_of_a_broken_config_is_refused_and_the_daemon_keeps_running() {
    let stack = TestStack::up(&one_node()).unwrap();
    let good = std::fs::read_to_string(&stack.config).unwrap();
    std::fs::write(
        &stack.config,
        format!("{good}\nstatus_intervall = \"1s\"\n"),
    )
    .unwrap();

    let out = flatipfsctl(&stack, None, &["reload-config", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = json_of(&out);
    assert_eq!(
        error["error"]["name"],
        "org.flatipfs.Manager1.Error.InvalidConfig"
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("status_intervall"), "{message}");
    assert!(
        message.contains(stack.config.to_str().unwrap()),
        "{message}"
    );

    let status = flatipfsctl(&stack, None, &["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    assert_eq!(json_of(&status)["kubo"]["reachable"], true);
}

#[test]
fn status_works_for_root_and_for_an_unprivileged_user() {
    let stack = TestStack::up(&StackOptions::default()).unwrap();
    users::ensure_test_users().unwrap();
    for user in [None, Some(PLAIN_USER)] {
        let text = flatipfsctl(&stack, user, &["status"]);
        assert!(text.status.success(), "{user:?}: {text:?}");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains(&format!("flatipfsd {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains("0.43.1"), "{text}");

        let json = flatipfsctl(&stack, user, &["status", "--json"]);
        assert!(json.status.success(), "{user:?}: {json:?}");
        let json = json_of(&json);
        assert_eq!(json["daemon"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["kubo"]["reachable"], true);
        assert_eq!(json["kubo"]["version"], "0.43.1");
        assert_eq!(json["kubo"]["api"], stack.kubo[0].api.as_str());
        // The two nodes of the stack are connected to each other.
        assert!(json["kubo"]["peers"].as_u64().unwrap() >= 1, "{json}");
    }
}

#[test]
fn status_without_a_daemon_says_so_and_exits_6() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 0,
        daemon: false,
        ..Default::default()
    })
    .unwrap();
    let out = flatipfsctl(&stack, None, &["status"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach flatipfsd"), "{stderr}");
    assert!(stderr.contains("systemctl start flatipfsd"), "{stderr}");

    let json = flatipfsctl(&stack, None, &["status", "--json"]);
    assert_eq!(json.status.code(), Some(6));
    assert_eq!(json_of(&json)["error"]["exit_code"], 6);

    // No bus at all is the same situation for the user.
    let mut no_bus = Command::new(paths::binary("flatipfsctl").unwrap());
    no_bus
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}/nothing-here", stack.dir.display()),
        )
        .arg("status");
    assert_eq!(users::output(&mut no_bus).unwrap().status.code(), Some(6));
}

/// Runs `flatipfsd --config` on `text`; returns (exit code, stderr).
fn start_with_config(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flatipfsd.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(paths::binary("flatipfsd").unwrap());
    command
        // Never the machine's real bus: start-up must fail before any bus use.
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}/no-bus", dir.path().display()),
        )
        .arg("--config")
        .arg(&path);
    let out = users::output(&mut command).unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn a_bad_config_file_stops_the_daemon_naming_file_line_and_key() {
    require_root();
    let (code, stderr, path) = start_with_config(
        "log_level = \"info\"\n\n[kubo]\napi_address = \"/ip4/127.0.0.1/tcp/5001\"\n",
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains(&format!("{path}:4")), "{stderr}");
    assert!(stderr.contains("api_address"), "{stderr}");

    let (code, stderr, path) = start_with_config("[kubo]\nstatus_interval = 5\n");
    assert_ne!(code, Some(0));
    assert!(stderr.contains(&format!("{path}:2")), "{stderr}");
    assert!(stderr.contains("key `status_interval`"), "{stderr}");

    let mut missing = Command::new(paths::binary("flatipfsd").unwrap());
    missing.args(["--config", "/nonexistent/flatipfsd.toml"]);
    let out = users::output(&mut missing).unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/flatipfsd.toml"));
}

/// Collects `KuboStatus` values from `PropertiesChanged` signals.
fn watch_kubo_status(stack: &Stack) -> mpsc::Receiver<KuboStatus> {
    let bus = stack.bus().unwrap();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let manager = ManagerProxyBlocking::new(&bus).unwrap();
        let changes = manager.receive_kubo_status_changed();
        ready_tx.send(()).unwrap();
        for change in changes {
            if let Ok(status) = change.get() {
                if tx.send(status).is_err() {
                    return;
                }
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

fn wait_for_status(
    rx: &mpsc::Receiver<KuboStatus>,
    what: &str,
    want: impl Fn(&KuboStatus) -> bool,
) -> KuboStatus {
    loop {
        let status = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no PropertiesChanged with {what} within {LIMIT:?}"));
        if want(&status) {
            return status;
        }
    }
}

#[test]
fn kubo_status_follows_the_node_going_away_and_coming_back() {
    let stack = TestStack::up(&one_node()).unwrap();
    let manager = ManagerProxyBlocking::new(&stack.bus().unwrap()).unwrap();
    let mut reachable = || Ok(manager.kubo_status()?.reachable);
    wait_for("KuboStatus reachable", LIMIT, &mut reachable).unwrap();

    let changes = watch_kubo_status(&stack);
    stack.stop_kubo(1).unwrap();
    let down = wait_for_status(&changes, "Reachable=false", |s| !s.reachable);
    assert!(
        !down.error.is_empty(),
        "an unreachable node comes with a reason"
    );

    stack.start_kubo(1).unwrap();
    let up = wait_for_status(&changes, "Reachable=true", |s| s.reachable);
    assert_eq!(up.version, "0.43.1");
    assert!(up.error.is_empty(), "{up:?}");
}

#[test]
fn embedded_kubo_is_created_supervised_and_stopped_with_the_daemon() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 0,
        embedded_kubo: true,
        ..Default::default()
    })
    .unwrap();
    assert!(
        stack.dir.join("state/kubo/config").is_file(),
        "the embedded repo lives under the state directory"
    );
    let manager = ManagerProxyBlocking::new(&stack.bus().unwrap()).unwrap();
    let mut usable = || Ok(manager.kubo_status()?.usable());
    wait_for("the embedded node", LIMIT, &mut usable).unwrap();
    assert!(
        stack.dir.join("state/kubo/config").is_file(),
        "the embedded repo lives under the state directory"
    );
    let status = manager.kubo_status().unwrap();
    assert!(status.embedded);
    assert_eq!(status.version, "0.43.1");

    let daemon = stack.process("flatipfsd").unwrap();
    let first = ipfs_children(daemon.pid);
    assert_eq!(first.len(), 1, "one embedded node: {first:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let mut restarted = || {
        let now = ipfs_children(daemon.pid);
        Ok(now.len() == 1 && now[0] != first[0] && manager.kubo_status()?.usable())
    };
    wait_for("a restarted embedded node", LIMIT, &mut restarted).unwrap();
    let second = ipfs_children(daemon.pid)[0];

    daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{second}")).exists()
            || flatipfs_tests::process::start_time(second).is_none(),
        "the embedded node outlived the daemon"
    );
}

#[test]
fn systemd_unit_verifies_without_any_output() {
    let unit =
        std::fs::read_to_string(paths::project_root().join("systemd/flatipfsd.service")).unwrap();
    let daemon = paths::binary("flatipfsd").unwrap();
    assert!(unit.contains("\nExecStart=/usr/libexec/flatipfsd\n"));
    // verify insists that ExecStart= exists: point it at the built binary.
    let unit = unit.replace(
        "\nExecStart=/usr/libexec/flatipfsd\n",
        &format!("\nExecStart={}\n", daemon.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flatipfsd.service");
    std::fs::write(&path, unit).unwrap();
    let analyze = paths::system_program("/usr/bin/systemd-analyze", "systemd").unwrap();
    // The optional update timer and its service, with flatipfsctl where
    // the package puts it replaced by the built one.
    let ctl = paths::binary("flatipfsctl").unwrap();
    for name in ["flatipfs-update.service", "flatipfs-update.timer"] {
        let text = std::fs::read_to_string(paths::project_root().join("systemd").join(name))
            .unwrap()
            .replace("/usr/bin/flatipfsctl", ctl.to_str().unwrap());
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let service = std::fs::read_to_string(dir.path().join("flatipfs-update.service")).unwrap();
    assert!(
        service.contains("update --trigger-automatic-update-policy"),
        "{service}"
    );
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .arg(dir.path().join("flatipfs-update.service"))
        .arg(dir.path().join("flatipfs-update.timer"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "systemd-analyze verify warned"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    let activation =
        std::fs::read_to_string(paths::project_root().join("dbus/org.flatipfs.Manager1.service"))
            .unwrap();
    assert!(activation.contains("\nName=org.flatipfs.Manager1\n"));
    assert!(activation.contains("\nSystemdService=flatipfsd.service\n"));
}

#[test]
fn polkit_policy_is_valid_complete_and_loaded_by_polkitd() {
    let policy = paths::project_root().join("polkit/org.flatipfs.manager1.policy");
    let xmllint = paths::system_program("/usr/bin/xmllint", "libxml2-utils").unwrap();
    let dtd = paths::system_program("/usr/share/polkit-1/policyconfig-1.dtd", "polkitd").unwrap();
    let out = Command::new(xmllint)
        .arg("--noout")
        .arg("--dtdvalid")
        .arg(&dtd)
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the policy is not valid against polkit's DTD: {out:?}"
    );

    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 0,
        daemon: false,
        ..Default::default()
    })
    .unwrap();
    let pkaction = paths::system_program("/usr/bin/pkaction", "polkitd").unwrap();
    for action in flatipfs_dbus::polkit::Action::ALL {
        let out = run_ok(
            stack
                .command(&pkaction)
                .args(["--verbose", "--action-id", action.id()]),
        )
        .unwrap_or_else(|e| panic!("polkitd does not know {}: {e:#}", action.id()));
        assert!(out.contains("implicit active:"), "{out}");
    }
    let configure = run_ok(stack.command(&pkaction).args([
        "--verbose",
        "--action-id",
        "org.flatipfs.manager1.configure",
    ]))
    .unwrap();
    assert!(configure.contains("implicit any:      no"), "{configure}");
    let publish = run_ok(stack.command(&pkaction).args([
        "--verbose",
        "--action-id",
        "org.flatipfs.manager1.publish",
    ]))
    .unwrap();
    assert!(
        publish.contains("implicit active:   auth_admin\n"),
        "{publish}"
    );
}

#[test]
fn two_stacks_run_side_by_side_and_down_stops_exactly_its_own() {
    let a = TestStack::up(&one_node()).unwrap();
    let b = TestStack::up(&one_node()).unwrap();
    let bystander = Command::new("sleep").arg("300").spawn().unwrap();

    for stack in [&a, &b] {
        let out = flatipfsctl(stack, None, &["status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(json_of(&out)["kubo"]["api"], stack.kubo[0].api.as_str());
    }
    assert_ne!(a.kubo[0].api, b.kubo[0].api);

    let a_processes = a.processes().unwrap();
    assert_eq!(
        a_processes.len(),
        4,
        "dbus, polkitd, kubo-1, flatipfsd: {a_processes:?}"
    );
    Stack::down(&a.dir).unwrap();
    for owned in &a_processes {
        assert!(!owned.alive(), "{} survived down", owned.name);
    }
    assert!(!a.dir.join("system_bus_socket").exists() || a.bus().is_err());
    assert_eq!(
        b.processes().unwrap().len(),
        4,
        "the other stack lost processes"
    );
    let out = flatipfsctl(&b, None, &["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        flatipfs_tests::process::start_time(bystander.id() as i32).is_some(),
        "down killed a process it did not start"
    );
    let mut bystander = bystander;
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}
