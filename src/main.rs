//! The `vault-login` binary: parse configuration, run the loop, map the outcome to an exit code.
#![forbid(unsafe_code)]

use tracing::warn;
use vault_login::config::{Config, ConfigError};
use vault_login::error::{Error, EXIT_OK};

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(Error::Config(ConfigError::Help(text))) => {
            print!("{text}");
            EXIT_OK
        }
        Err(e) => {
            // Logging may not be set up yet (configuration errors): print the one line ourselves.
            eprintln!("vault-login: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn real_main() -> Result<i32, Error> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "install") {
        let path = vault_login::exec::install::run(&args[2..])?;
        eprintln!("vault-login: installed {}", path.display());
        return Ok(EXIT_OK);
    }
    // The process holds a Vault token: no core dumps of it, and other processes of the same
    // user cannot read its memory through /proc or ptrace.
    let dumpable =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let cfg = Config::from_process()?;
    vault_login::telemetry::init(&cfg.log, cfg.log_format);
    if let Err(e) = dumpable {
        warn!(error = %e, "cannot mark the process non-dumpable");
    }
    cfg.warnings().iter().for_each(|w| warn!("{w}"));
    let summary = cfg.summary();
    vault_login::agent::process::run(cfg, summary)
}
