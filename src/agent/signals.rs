//! Process signals: SIGTERM/SIGINT stop the loop, SIGHUP asks for a new login; in `exec` mode
//! every signal a supervisor passes on is the program's.
//!
//! tokio's handlers are built on signal-hook-registry (the core of signal-hook): the handler only
//! records the signal and wakes the runtime, so nothing unsafe runs in signal context and no
//! signal is lost between awaits. signal-hook itself would add only its iterator API on top.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::agent::Control;
use crate::error::Error;
use crate::hooks::parse_signal;

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

/// The signals `exec` passes to the program (SIGHUP among them: the program's, not a re-login).
const FORWARDED: &[&str] = &["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"];

/// `exec`: turns each of the forwarded signals (TERM, INT, HUP, QUIT, USR1, USR2, WINCH) into [`Control::Forward`]. Must be called within a tokio
/// runtime.
pub fn forward_to_program(tx: mpsc::UnboundedSender<Control>) -> Result<(), Error> {
    for name in FORWARDED {
        let sig = parse_signal(name).map_err(Error::Fatal)?;
        let mut stream = signal(SignalKind::from_raw(sig.number()))
            .map_err(|e| Error::Fatal(format!("cannot install the {sig} handler: {e}")))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(Control::Forward(sig)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}
