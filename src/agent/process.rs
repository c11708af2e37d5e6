//! The whole process around the loop, for `main`: the runtime, the health server, the signal
//! handlers, and the exit once the loop (and with `exec`, the program) has finished.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::signals::{forward_signals, forward_to_program};
use super::Agent;
use crate::config::Config;
use crate::error::Error;
use crate::health;
use crate::health::status::Status;

/// Runs vault-login as configured by `cfg` (already checked; `summary` is its startup line)
/// and returns the process's exit code: the program's under `exec`.
pub fn run(cfg: Config, summary: String) -> Result<i32, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Fatal(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve(cfg, summary));
    // A file write stuck on a hung volume must not hold up the exit.
    runtime.shutdown_background();
    result
}

async fn serve(cfg: Config, summary: String) -> Result<i32, Error> {
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
}
