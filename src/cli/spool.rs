//! `hookfan spool verify|repair`: the spool offline.

use super::*;

/// The data dir an offline spool command works on: `--data-dir`, else the config's.
fn spool_data_dir(config_path: &Path, data_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(load_for_operator(config_path, &[])?
            .data_dir()
            .to_path_buf()),
    }
}

/// `hookfan spool verify`: reports what the log holds and whether hookfan would open it.
/// Changes nothing, takes no lock (it may run beside a live daemon). Fails (exit 1) when
/// hookfan would refuse the log.
pub fn spool_verify(config_path: &Path, data_dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let data_dir = spool_data_dir(config_path, data_dir)?;
    let report = hookfan::spool::verify::verify(&data_dir.join(hookfan::spool::facade::DIR_NAME));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.opens() {
        bail!("hookfan would refuse this spool at start; `hookfan spool repair` (with hookfan stopped) keeps every intact record");
    }
    Ok(())
}

/// `hookfan spool repair`: rebuilds the log from every intact record, with hookfan stopped;
/// prints the report of what could not be kept and where it was written.
pub fn spool_repair(config_path: &Path, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let data_dir = spool_data_dir(config_path, data_dir)?;
    let log = hookfan::spool::repair::writer_config_like(
        &data_dir.join(hookfan::spool::facade::DIR_NAME),
    );
    let repaired = hookfan::spool::repair::repair(&data_dir, log)?;
    print!("{}", repaired.report);
    println!();
    println!("report written to {}", repaired.report_file.display());
    println!(
        "the old log was moved to {}; the repaired one is in place",
        repaired.moved_to.display()
    );
    Ok(())
}
