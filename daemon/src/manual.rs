//! The man pages of `flatipfsd`, generated from its clap definition
//! (`flatipfsd --generate-man DIR`, which `scripts/package.sh` runs; no part
//! of the definition): `flatipfsd.8` and `flatipfsd-mount-release.8`.

use std::io::Write;
use std::path::Path;

use clap_mangen::Man;
use roff::{roman, Roff};

/// Writes the pages into `dir`.
pub fn generate(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let version = command.get_version().unwrap_or_default().to_string();
    let page = |command: clap::Command| {
        Man::new(command)
            .section("8")
            .source(format!("flatipfs {version}"))
            .manual("flatipfs manual")
    };
    for sub in command.get_subcommands() {
        page(sub.clone()).generate_to(dir)?;
    }
    let man = page(command.clone());
    let mut w = std::fs::File::create(dir.join(man.get_filename()))?;
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    man.render_subcommands_section(&mut w)?;
    let mut roff = Roff::new();
    roff.control("SH", ["SERVICE"]);
    roff.text([roman(
        "flatipfsd runs as root, started by systemd (flatipfsd.service) on the first call \
         to org.flatipfs.Manager1 on the system bus. It reads /etc/flatipfs/flatipfsd.toml \
         (see flatipfsd.toml(5)), keeps its state in /var/lib/flatipfs, runs its embedded \
         Kubo node as the user flatipfs-kubo and mounts the files of installed apps over FUSE. \
         Clients: flatipfsctl(1), busctl(1).",
    )]);
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 after SIGTERM or SIGINT; 1 on a fatal error (bad configuration, bus name taken \
         or lost, Kubo unreachable or too old), printed on stderr and logged.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "flatipfsctl(1), flatipfsd.toml(5), systemd.service(5); \
         /usr/share/doc/flatipfs/ (dbus-api.md, config.md, security.md)",
    )]);
    roff.to_writer(&mut w)?;
    man.render_version_section(&mut w)?;
    w.flush()
}
