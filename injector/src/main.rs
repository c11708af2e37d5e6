//! The `vault-login-injector` binary: read the settings, serve the webhook until SIGTERM.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::info;
use vault_login_injector::server::{self, Shared};
use vault_login_injector::tls::ReloadingCert;
use vault_login_injector::{settings, Error};

fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{}", settings::help());
        return;
    }
    if let Some(arg) = std::env::args().nth(1) {
        eprintln!("vault-login-injector: unexpected argument {arg:?}; it is configured by VAULT_LOGIN_INJECTOR_* variables (see --help)");
        std::process::exit(vault_login_injector::EXIT_CONFIG);
    }
    if let Err(e) = real_main() {
        eprintln!("vault-login-injector: {e}");
        std::process::exit(e.exit_code());
    }
}

fn real_main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).ok();
    let s = settings::load(&env)?;
    vault_login::telemetry::init(&s.log, s.log_format);
    let cert = Arc::new(ReloadingCert::new(&s.tls_cert, &s.tls_key)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = server::bind(s.listen).await?;
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| Error::Runtime(format!("cannot watch SIGTERM: {e}")))?;
        info!(listen = %s.listen, image = %s.inject.image, native_sidecar = s.inject.native_sidecar, "serving");
        let shared = Arc::new(Shared { inject: s.inject, metrics: Default::default(), cert });
        server::run(listener, shared, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            info!("stopping");
        })
        .await;
        Ok(())
    })
}
