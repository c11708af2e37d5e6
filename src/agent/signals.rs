//! Process signals: SIGTERM/SIGINT stop the loop, SIGHUP asks for a new login.
//!
//! tokio's handlers are built on signal-hook-registry (the core of signal-hook): the handler only
//! records the signal and wakes the runtime, so nothing unsafe runs in signal context and no
//! signal is lost between awaits. signal-hook itself would add only its iterator API on top.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::agent::Control;
use crate::error::Error;

/// Turns SIGTERM/SIGINT into [`Control::Shutdown`] and SIGHUP into [`Control::Relogin`].
/// Must be called within a tokio runtime.
pub fn forward_signals(tx: mpsc::UnboundedSender<Control>) -> Result<(), Error> {
    let install = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| Error::Fatal(format!("cannot install the {name} handler: {e}")))
    };
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = term.recv() => Control::Shutdown,
                _ = int.recv() => Control::Shutdown,
                _ = hup.recv() => Control::Relogin,
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    Ok(())
}
