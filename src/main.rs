//! The `vault-login` binary: parse configuration, run the loop, map the outcome to an exit code.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use vault_login::agent::signals::{forward_signals, forward_to_program};
use vault_login::agent::Agent;
use vault_login::config::{Config, ConfigError};
use vault_login::error::{Error, EXIT_OK};
use vault_login::health;
use vault_login::health::status::Status;

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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Fatal(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async move {
        let status = Arc::new(Status::default());
        let exec = cfg.exec.is_some();
        let listen = cfg.listen;
        // Checks TLS files and the token directory: configuration errors stay one line, first.
        let agent = Agent::new(cfg, Arc::clone(&status))?;
        let listener = match listen {
            Some(addr) => Some(health::bind(addr).await?),
            None => None,
        };
        info!(config = %summary, version = env!("CARGO_PKG_VERSION"), "starting");
        let (tx, rx) = mpsc::unbounded_channel();
        match exec {
            true => forward_to_program(tx)?,
            false => forward_signals(tx)?,
        }
        // The server answers until the loop has finished (so /readyz turns 503 when the token
        // file is removed on shutdown), then stops.
        let (stop_health, health_stopped) = oneshot::channel::<()>();
        let server = listener.map(|listener| {
            tokio::spawn(health::serve(listener, Arc::clone(&status), async {
                let _ = health_stopped.await;
            }))
        });
        let result = agent.run_to_exit(rx).await;
        drop(stop_health);
        if let Some(server) = server {
            let _ = server.await;
        }
        if let Err(e) = &result {
            error!(error = %e, "exiting");
        }
        result
    });
    // A file write stuck on a hung volume must not hold up the exit.
    runtime.shutdown_background();
    result
}
