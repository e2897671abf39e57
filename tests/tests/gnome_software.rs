//! The real GNOME Software (Debian's 43) with the flatipfs plugin, on the
//! private stacks: `gnome-software-cmd` under `xvfb-run dbus-run-session`
//! with the client's system bus searches, installs, updates and removes
//! through the client's daemon, and the daemon's state is checked each
//! time, not only the command's output; a daemon error reaches it as a
//! readable error; with no daemon on the bus the plugin keeps quiet. A GUI
//! test opens the Installed page of `gnome-software` and saves a
//! screenshot (docs/gnome-software-installed.png).

use flatipfs_tests::catalogs::{
    hello_deploy, publish_dir, publish_with_appstream, refresh, ICON_COLOUR,
};
use flatipfs_tests::ctl::{flatpak, ok_json, run_hello, state_if_installed};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::software_centre::{
    gs_cmd_as, gs_cmd_ok, gs_cmd_without_daemon, headless, is_png, pixels_of_colour,
    screenshot_when, GS_CMD,
};
use flatipfs_tests::users::{ensure_test_users, CHALLENGED_USER};
use serde_json::Value;

const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

/// The blocks of `gnome-software-cmd --show-results` output, one per app.
fn apps(out: &str) -> Vec<String> {
    out.split("GsApp:").skip(1).map(str::to_string).collect()
}

/// The block of `id` (management plugin flatipfs), if listed.
fn listed(out: &str, id: &str) -> Option<String> {
    apps(out).into_iter().find(|a| {
        a.lines()
            .any(|l| l.trim() == format!("id:                  {id}").trim())
            && a.contains("management-plugin:   flatipfs")
    })
}

fn field(block: &str, key: &str) -> String {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn info(pair: &Pair) -> Value {
    ok_json(&pair.client, &["info", "--json", "org.test.Hello"])
}

#[test]
fn the_software_centre_searches_installs_updates_and_removes_through_the_daemon() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let v1 = publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    refresh(client);

    // Search finds the published app by name, with what the catalog says.
    let found = gs_cmd_ok(client, &["--show-results", "search", "world"]).unwrap();
    let hello = listed(&found, "org.test.Hello").unwrap_or_else(|| panic!("{found}"));
    assert_eq!(field(&hello, "name"), "Hello World", "{hello}");
    assert_eq!(field(&hello, "summary"), "Greets you from IPFS");
    assert_eq!(field(&hello, "state"), "available");
    assert_eq!(field(&hello, "version"), "1");
    assert!(field(&hello, "icon").ends_with(".png"), "{hello}");
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);

    // Install: through the daemon, which now has it; flatpak runs it.
    gs_cmd_ok(client, &["action", "install", "org.test.Hello"]).unwrap();
    assert_eq!(
        state_if_installed(client, "org.test.Hello").as_deref(),
        Some("installed")
    );
    assert_eq!(info(&pair)["version"], "1");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let installed = gs_cmd_ok(client, &["--show-results", "installed"]).unwrap();
    let hello = listed(&installed, "org.test.Hello").unwrap_or_else(|| panic!("{installed}"));
    assert_eq!(field(&hello, "state"), "installed");
    assert_eq!(field(&hello, "name"), "Hello World");
    assert!(
        listed(&installed, "org.test.Platform").is_some(),
        "{installed}"
    );

    // A new publication: refresh, the update is listed, and applied.
    let dir = hello_deploy(&pair, "repo-v2", "Hello World", true);
    publish_dir(&pair, &dir, "2");
    gs_cmd_ok(client, &["refresh"]).unwrap();
    assert_eq!(info(&pair)["available"], "2", "the daemon saw the update");
    let updates = gs_cmd_ok(client, &["--show-results", "updates"]).unwrap();
    let hello = listed(&updates, "org.test.Hello").unwrap_or_else(|| panic!("{updates}"));
    assert_eq!(field(&hello, "state"), "updatable-live");
    assert_eq!(field(&hello, "update-version"), "2");
    gs_cmd_ok(client, &["action", "update", "org.test.Hello"]).unwrap();
    assert_eq!(info(&pair)["version"], "2");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let updates = gs_cmd_ok(client, &["--show-results", "updates"]).unwrap();
    assert!(listed(&updates, "org.test.Hello").is_none(), "{updates}");

    // A release the daemon refuses: GNOME Software gets its reason.
    let evil = pair.handmade(v1["release"].as_str().unwrap(), |m| {
        let entry = m["entries"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["type"] == "file" && e["path"] == "files/share/hello/data.txt")
            .unwrap();
        entry["size"] = (entry["size"].as_u64().unwrap() + 1).into();
    });
    pair.offer_release("org.test.Hello", &evil);
    gs_cmd_ok(client, &["refresh"]).unwrap();
    assert_eq!(info(&pair)["available"], "4", "the daemon saw the release");
    // GNOME Software reports a failed update as an event (a notification
    // in the GUI), which gnome-software-cmd does not print: its test switch
    // GS_SELF_TEST_PLUGIN_ERROR_FAIL_HARD makes the error the command's.
    let out = headless(
        client,
        GS_CMD,
        &[
            "--plugin-blocklist=packagekit",
            "action",
            "update",
            "org.test.Hello",
        ],
    )
    .env("GS_SELF_TEST_PLUGIN_ERROR_FAIL_HARD", "1")
    .output()
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Could not update the app: "), "{text}");
    assert!(text.contains("data.txt"), "the daemon's reason: {text}");
    assert_eq!(info(&pair)["version"], "2", "unchanged");

    // Remove: gone from the daemon, flatpak no longer runs it.
    gs_cmd_ok(client, &["action", "remove", "org.test.Hello"]).unwrap();
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);
    let run = flatpak(client, &["run", "org.test.Hello"])
        .output()
        .unwrap();
    assert!(!run.status.success(), "{run:?}");
    let found = gs_cmd_ok(client, &["--show-results", "search", "world"]).unwrap();
    let hello = listed(&found, "org.test.Hello").unwrap_or_else(|| panic!("{found}"));
    assert_eq!(field(&hello, "state"), "available");
}

#[test]
fn without_a_daemon_on_the_bus_the_plugin_disables_itself_quietly() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let out =
        gs_cmd_without_daemon(&pair.client, &["--verbose", "--show-results", "installed"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("disabling flatipfs as setup failed"),
        "{stdout}"
    );
    for line in stdout.lines().chain(stderr.lines()) {
        let lower = line.to_lowercase();
        assert!(
            !(lower.contains("flatipfs")
                && (lower.contains("warning") || lower.contains("critical"))),
            "{line}"
        );
    }
    assert!(
        !stdout.contains("management-plugin:   flatipfs"),
        "{stdout}"
    );
}

#[test]
fn the_installed_page_shows_the_app_with_its_name_and_icon() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    refresh(client);
    // The icon is the only thing of its colour on the screen: once enough
    // of it is shown (at least a 32x32 block), the page has the app.
    let [r, g, b, _] = ICON_COLOUR;
    let shot = screenshot_when(client, "installed", 90, |shot| {
        pixels_of_colour(shot, [r, g, b]).unwrap_or(0) >= 32 * 32
    })
    .unwrap();
    // The row's name comes from the plugin: GNOME Software listed the app
    // it made, with the catalog's name.
    let log = std::fs::read_to_string(client.dir.join("shots/gnome-software.log")).unwrap();
    assert!(log.contains("flatipfs"), "the plugin ran");
    let installed = gs_cmd_ok(client, &["--show-results", "installed"]).unwrap();
    let hello = listed(&installed, "org.test.Hello").unwrap();
    assert_eq!(field(&hello, "name"), "Hello World");
    let docs = flatipfs_tests::paths::project_root().join("docs/gnome-software-installed.png");
    // The window only, without the empty screen around it.
    let trimmed = std::process::Command::new("convert")
        .arg(&shot)
        .args(["-trim", "+repage"])
        .arg(&docs)
        .status()
        .unwrap();
    assert!(trimmed.success());
    assert!(is_png(&docs));
}

#[test]
fn an_app_still_being_fetched_shows_that_it_runs_degraded() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let v1 = publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    refresh(client);
    // One block of a file not read at start-up cannot be fetched.
    let _withheld = pair.withhold(
        v1["release"].as_str().unwrap(),
        "deploy/files/share/hello/data.txt",
    );
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(installed["state"], "degraded", "{installed}");
    let listed_now = gs_cmd_ok(client, &["--show-results", "installed"]).unwrap();
    let hello = listed(&listed_now, "org.test.Hello").unwrap_or_else(|| panic!("{listed_now}"));
    assert_eq!(field(&hello, "state"), "installed");
    let summary = field(&hello, "summary");
    assert!(
        summary.starts_with("Still being fetched from IPFS (") && summary.contains("it runs"),
        "{hello}"
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(
        state_if_installed(client, "org.test.Hello").as_deref(),
        Some("degraded")
    );
}

#[test]
fn authorization_is_interactive_only_when_gnome_software_says_so() {
    ensure_test_users().unwrap();
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    refresh(client);
    // polkit asks this user for an admin's password (test rule).
    let text = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let quiet = gs_cmd_as(
        client,
        CHALLENGED_USER,
        &["action", "install", "org.test.Hello"],
    )
    .unwrap();
    assert!(!quiet.status.success(), "{}", text(&quiet));
    assert!(
        text(&quiet).contains("Authentication is required to install the app"),
        "not interactive: the daemon said a password would be needed: {}",
        text(&quiet)
    );
    // Interactive: polkit is asked to interact (there is no agent here to
    // ask the password, so it says no).
    let asked = gs_cmd_as(
        client,
        CHALLENGED_USER,
        &["--interactive", "action", "install", "org.test.Hello"],
    )
    .unwrap();
    assert!(!asked.status.success(), "{}", text(&asked));
    assert!(
        !text(&asked).contains("Authentication is required"),
        "interactive: {}",
        text(&asked)
    );
    assert!(
        text(&asked).contains("Not allowed to install the app")
            && text(&asked).contains("no polkit agent answered"),
        "{}",
        text(&asked)
    );
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);
}
