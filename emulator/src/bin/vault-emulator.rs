//! `vault-emulator`: the emulator as a standalone server for demos and benchmarks.
//! Runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use vault_emulator::{Emulator, Fault, Options, Role, TokenType};

const USAGE: &str = "\
usage: vault-emulator [--port N] [--ttl SECS] [--max-ttl SECS] [--role NAME] [--audience AUD]
                      [--jwt-out PATH] [--addr-out PATH] [--batch] [--quiet]
                      [--down-after SECS --down-for SECS]

Serves the Vault API subset vault-login uses on 127.0.0.1 (kubernetes auth at auth/kubernetes),
with the tutorial's KV v2 secret at internal/data/database/config readable by the role.
  --port N          port to listen on (default 0: any free port)
  --ttl SECS        role token_ttl (default 10)
  --max-ttl SECS    role token_max_ttl (default 30)
  --role NAME       role name (default \"default\")
  --audience AUD    role audience; JWTs must carry it in aud
  --jwt-out PATH    write a service-account JWT (namespace default, sa default, 1 h) to PATH
  --addr-out PATH   write the URL to PATH
  --batch           issue batch tokens
  --quiet           do not log requests to stderr
  --down-after SECS, --down-for SECS
                    go down (connection refused) once after SECS, for SECS";

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;

struct Args {
    port: u16,
    ttl: u64,
    max_ttl: u64,
    role: String,
    audience: Option<String>,
    jwt_out: Option<String>,
    addr_out: Option<String>,
    batch: bool,
    quiet: bool,
    outage: Option<(u64, u64)>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        ttl: 10,
        max_ttl: 30,
        role: "default".into(),
        audience: None,
        jwt_out: None,
        addr_out: None,
        batch: false,
        quiet: false,
        outage: None,
    };
    let (mut down_after, mut down_for) = (None, None);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} wants a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                args.port = v
                    .parse()
                    .map_err(|_| format!("--port wants a port number, got {v:?}"))?;
            }
            "--ttl" => args.ttl = number(value()?)?,
            "--max-ttl" => args.max_ttl = number(value()?)?,
            "--role" => args.role = value()?,
            "--audience" => args.audience = Some(value()?),
            "--jwt-out" => args.jwt_out = Some(value()?),
            "--addr-out" => args.addr_out = Some(value()?),
            "--down-after" => down_after = Some(number(value()?)?),
            "--down-for" => down_for = Some(number(value()?)?),
            "--batch" => args.batch = true,
            "--quiet" => args.quiet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.outage = match (down_after, down_for) {
        (Some(after), Some(length)) => Some((after, length)),
        (None, None) => None,
        _ => return Err("--down-after and --down-for go together".into()),
    };
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vault-emulator: {e}\n\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let vault = Arc::new(Emulator::start_at(
        Options::default(),
        SocketAddr::from(([127, 0, 0, 1], args.port)),
    ));
    vault.log_requests(!args.quiet);
    vault.put_role(
        "kubernetes",
        &args.role,
        Role {
            audience: args.audience.clone(),
            token_ttl: Duration::from_secs(args.ttl),
            token_max_ttl: Duration::from_secs(args.max_ttl),
            token_type: if args.batch {
                TokenType::Batch
            } else {
                TokenType::Service
            },
            token_policies: vec!["default".into(), "app".into()],
            ..Role::default()
        },
    );
    // The tutorial's next step: its KV v2 secret, readable by the role's tokens.
    vault.put_policy("app", &[("internal/data/database/config", &["read"])]);
    vault.put_kv2(
        "internal",
        "database/config",
        serde_json::json!({"username": "db-readonly-username", "password": "db-secret-password"}),
    );
    if let Some(path) = &args.jwt_out {
        let audience = args.audience.as_deref().unwrap_or("vault");
        let jwt = vault.jwt("default", "default", &[audience], 3600);
        if let Err(e) = std::fs::write(path, jwt) {
            eprintln!("vault-emulator: cannot write the JWT to {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.addr_out {
        if let Err(e) = std::fs::write(path, vault.url()) {
            eprintln!("vault-emulator: cannot write the URL to {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !args.quiet {
        eprintln!(
            "vault-emulator listening on {} (role {:?}, ttl {}s, max ttl {}s)",
            vault.url(),
            args.role,
            args.ttl,
            args.max_ttl
        );
    }
    if let Some((after, length)) = args.outage {
        let vault = vault.clone();
        let quiet = args.quiet;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(after));
            if !quiet {
                eprintln!("vault-emulator: going down for {length}s");
            }
            vault.set_fault(Fault::Down);
            std::thread::sleep(Duration::from_secs(length));
            vault.clear_fault();
            if !quiet {
                eprintln!("vault-emulator: back up");
            }
        });
    }
    match wait_for_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault-emulator: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    })
}
