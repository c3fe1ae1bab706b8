//! Man pages generated from the clap definitions (checked in under `man/`, kept current by a test).

use clap::CommandFactory;

use super::args::Cli;

/// Every page as (file name, roff bytes): `mailreplica.1` and one per subcommand.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    if clap_mangen::Man::new(cmd.clone()).render(&mut buf).is_ok() {
        out.push(("mailreplica.1".to_string(), buf));
    }
    for sub in cmd.get_subcommands() {
        let name = format!("mailreplica-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        if clap_mangen::Man::new(sub).render(&mut buf).is_ok() {
            out.push((format!("{name}.1"), buf));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when a checked-in page differs from the clap definitions. Regenerate with
    /// `MAILREPLICA_BLESS=1 cargo test --lib man_pages`.
    #[test]
    fn man_pages_are_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let bless = std::env::var_os("MAILREPLICA_BLESS").is_some();
        let pages = pages();
        assert!(
            pages.len() >= 3,
            "expected the main page and one per subcommand"
        );
        let mut stale = Vec::new();
        for (name, bytes) in pages {
            let path = dir.join(&name);
            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                if bless {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &bytes).unwrap();
                } else {
                    stale.push(name);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "man pages out of date: {stale:?}; run MAILREPLICA_BLESS=1 cargo test --lib man_pages"
        );
    }
}
