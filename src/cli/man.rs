//! `reelbox man DIR`: the man pages clap_mangen makes from the commands, and the sections
//! it cannot know that `reelbox.1` needs on a packaged box: where the config lives, the
//! environment the daemon reads, and where the service's log goes.

use std::io::Write;
use std::path::Path;

/// Appended to `reelbox.1` (roff).
/// `.nh`: paths are not hyphenated across lines (a reader copies them).
const SERVICE_SECTIONS: &str = r#".nh
.SH FILES
.TP
/etc/reelbox/config.toml
The system config, read by the daemon and by every CLI command (first of \fB\-\-config\fR,
\fBREELBOX_CONFIG\fR, this file, \fI$XDG_CONFIG_HOME/reelbox/config.toml\fR). Every key:
\fI/usr/share/doc/reelbox/config.example.toml\fR.
.TP
/etc/default/reelbox
Environment for the services only (\fBREELBOX_LOG\fR, \fBCUDA_VISIBLE_DEVICES\fR); what the CLI
must agree on goes in config.toml.
.TP
/var/lib/reelbox
The service's data dir: database, artifacts, models, ONNX Runtime.
.TP
reelbox.service, reelbox-worker.service
The systemd units (\fBsudo systemctl restart reelbox\fR). The log: \fBjournalctl \-u reelbox\fR.
A settings error stops the service with exit status 78 instead of restarting it.
.SH ENVIRONMENT
.TP
REELBOX_CONFIG
Config file to read instead of the default ones.
.TP
REELBOX_URL, REELBOX_KEY
The daemon a client command talks to, and its API key.
.TP
REELBOX_LOG
Log filter, e.g. \fBinfo,reelbox=debug\fR.
.TP
REELBOX_LOG_FORMAT
\fBjson\fR, or \fBjournald\fR (the default under systemd).
.TP
REELBOX_BIND, REELBOX_DATA_DIR, REELBOX_MODELS_DIR
Override the config's \fBbind\fR, \fBdata_dir\fR and \fBmodels_dir\fR.
"#;

/// Writes every command's man page into `dir`, `reelbox.1` with the service sections.
pub fn generate(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    let mut top = std::fs::OpenOptions::new().append(true).open(dir.join("reelbox.1"))?;
    top.write_all(SERVICE_SECTIONS.as_bytes())
}

#[cfg(test)]
mod tests {
    /// `man reelbox` on a packaged box names the config, the environment and the log.
    #[test]
    fn the_top_page_names_the_files_the_environment_and_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::generate(<super::super::Cli as clap::CommandFactory>::command(), dir.path()).expect("man pages");
        let page = std::fs::read_to_string(dir.path().join("reelbox.1")).expect("reelbox.1");
        for want in [".SH FILES", ".SH ENVIRONMENT", "/etc/reelbox/config.toml", "/etc/default/reelbox", "REELBOX_LOG"]
        {
            assert!(page.contains(want), "no {want} in reelbox.1");
        }
        assert!(page.contains(r"journalctl \-u reelbox"), "no journalctl in reelbox.1");
        let sub = std::fs::read_to_string(dir.path().join("reelbox-serve.1")).expect("reelbox-serve.1");
        assert!(!sub.contains(".SH FILES"), "only the top page has them");
    }
}
