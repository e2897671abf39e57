//! The password prompt of `flatipfsctl` (client/src/agent.rs): a user in no
//! admin group, without a login session, whom polkit asks to authenticate,
//! runs `flatipfsctl install` on a terminal (tmux). `flatipfsctl` starts
//! `pkttyagent` for itself, the prompt appears on that terminal; a wrong
//! password gets the access-denied message and exit code 4 and installs
//! nothing; the right one lets the install go through.

use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, run_hello};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::terminal::{self, Terminal, PASSWORD, PASSWORD_USER};

const PROMPT_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn a_user_types_the_password_at_the_prompt_and_the_install_goes_through() {
    terminal::ensure_password_user().unwrap();
    let pair = Pair::up("");
    pair.publish_v1();
    let client = &pair.client;

    // A wrong password: refused, nothing installed.
    let tty = Terminal::flatipfsctl(
        client,
        PASSWORD_USER,
        &["install", "main", "org.test.Hello"],
    )
    .unwrap();
    let screen = tty
        .wait_for(
            "AUTHENTICATING FOR org.flatipfs.manager1.install",
            PROMPT_TIMEOUT,
        )
        .unwrap();
    assert!(!screen.contains("hint:"), "{screen}");
    tty.wait_for("Password:", PROMPT_TIMEOUT).unwrap();
    tty.type_line("not-the-password").unwrap();
    let code = tty.exit_code(PROMPT_TIMEOUT).unwrap();
    let screen = tty.screen().unwrap();
    assert_eq!(code, 4, "{screen}");
    assert!(
        screen.contains("flatipfsctl: not authorized for org.flatipfs.manager1.install"),
        "{screen}"
    );
    assert!(!screen.contains(PASSWORD), "{screen}");
    let info = flatipfsctl(client, None, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info.status.code(), Some(3), "installed anyway: {info:?}");
    drop(tty);

    // The right password: installed, and it runs.
    let tty = Terminal::flatipfsctl(
        client,
        PASSWORD_USER,
        &["install", "main", "org.test.Hello"],
    )
    .unwrap();
    tty.wait_for("Password:", PROMPT_TIMEOUT).unwrap();
    tty.type_line(PASSWORD).unwrap();
    let code = tty.exit_code(INSTALL_TIMEOUT).unwrap();
    let screen = tty.screen().unwrap();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("AUTHENTICATION COMPLETE"), "{screen}");
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed: {screen}"
    );
    let info = flatipfsctl(client, None, &["info", "--json", "org.test.Hello"]);
    assert!(info.status.success(), "{info:?}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

/// Without a terminal there is no agent and no prompt: the same user is
/// told that authorization needs interaction (exit code 4), as before.
#[test]
fn without_a_terminal_no_agent_starts_and_the_call_is_refused() {
    terminal::ensure_password_user().unwrap();
    let pair = Pair::up("");
    pair.publish_v1();
    let out = flatipfsctl(
        &pair.client,
        Some(PASSWORD_USER),
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("AUTHENTICATING"));
}
