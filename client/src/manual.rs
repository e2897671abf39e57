//! The man pages and shell completions of `flatipfsctl`, generated from its
//! clap definition (`flatipfsctl --generate-docs DIR`, which
//! `scripts/package.sh` runs; no part of the definition, so no completion
//! offers it): `DIR/man/flatipfsctl.1` (with the exit codes
//! of [`crate::exit::CODES`]) and one page per subcommand
//! (`flatipfsctl-install.1`, …), `DIR/completions/` for bash, zsh and fish.

use std::io::Write;
use std::path::Path;

use clap_complete::Shell;
use clap_mangen::Man;
use roff::{bold, roman, Roff};

use crate::exit;

/// The shells completions are written for, and each file's name.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "flatipfsctl.bash"),
    (Shell::Zsh, "_flatipfsctl"),
    (Shell::Fish, "flatipfsctl.fish"),
];

/// Writes the man pages into `dir/man` and the completions into
/// `dir/completions`.
pub fn generate(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    for (shell, _) in SHELLS {
        clap_complete::generate_to(shell, &mut command.clone(), "flatipfsctl", &completions)?;
    }
    let mut page = std::fs::File::create(man.join("flatipfsctl.1"))?;
    main_page(&command, &mut page)?;
    page.flush()?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), &man)?;
    }
    Ok(())
}

/// `flatipfsctl.1`: clap's sections, then EXIT STATUS and SEE ALSO.
fn main_page(command: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let version = command.get_version().unwrap_or_default();
    let man = Man::new(command.clone())
        .source(format!("flatipfs {version}"))
        .manual("flatipfs manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit::CODES {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "flatipfsd(8), flatipfsd.toml(5), flatpak(1), pkttyagent(1); \
         /usr/share/doc/flatipfs/ (flatipfsctl.md, dbus-api.md, config.md)",
    )]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// One page per subcommand, recursively (`flatipfsctl-remote-add.1`).
fn subcommand_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), dir)?;
    }
    let version = command.get_version().unwrap_or_default().to_string();
    Man::new(command)
        .source(format!("flatipfs {version}"))
        .manual("flatipfs manual")
        .generate_to(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand, with its parents' names (`remote add`).
    fn visible(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            visible(sub, &path, out);
        }
    }

    #[test]
    fn man_pages_and_completions_name_every_subcommand_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        generate(crate::cli_command(), dir.path()).unwrap();
        let mut subcommands = Vec::new();
        visible(&crate::cli_command(), &[], &mut subcommands);
        assert!(subcommands.len() > 20, "{subcommands:?}");

        let main = std::fs::read_to_string(dir.path().join("man/flatipfsctl.1")).unwrap();
        assert!(main.contains(".SH \"EXIT STATUS\""), "{main}");
        for (code, meaning) in exit::CODES {
            assert!(main.contains(&format!("\\fB{code}\\fR")), "code {code}");
            assert!(main.contains(&meaning.replace('-', "\\-")), "{meaning}");
        }
        for path in &subcommands {
            if path.len() == 1 {
                assert!(main.contains(&path[0].replace('-', "\\-")), "{path:?}");
            }
            let page = dir
                .path()
                .join(format!("man/flatipfsctl-{}.1", path.join("-")));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{text}");
        }
        for (_, file) in SHELLS {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
            for path in &subcommands {
                let name = path.last().unwrap();
                assert!(text.contains(name.as_str()), "{file} lacks {name}");
            }
            assert!(!text.contains("generate-docs"), "{file}");
            assert!(text.contains("allow-new-permissions"), "{file}");
        }
    }

    #[test]
    fn help_ends_with_the_exit_codes() {
        let help = crate::cli_command().render_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        for (code, meaning) in exit::CODES {
            assert!(help.contains(&format!("  {code}  {meaning}")), "{help}");
        }
    }
}
