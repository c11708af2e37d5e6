//! CPU per template render, for BENCHMARKS.md (reported, never asserted):
//! `cargo run --release --example template_cpu`.
//!
//! Renders (a) 100 templates over 20 KV answers, shaped like tests/templates.rs's (three reads
//! each, one computed), and (b) the byte-for-byte corpus in tests/templates/ over the corpus's
//! secrets, each many times on one thread, and prints the mean time per render, including the
//! `discover` pass the sidecar makes before each render.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use vault_login::secrets::template::{Funcs, Read, Reads, Secret, Template};

fn secret(body: &str) -> Secret {
    Secret::from_vault_json(body).expect("secret json")
}

fn time(label: &str, templates: &[Template], reads: &Reads, funcs: &Funcs, rounds: usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        for t in templates {
            let _ = t.discover(reads, funcs);
            bytes += t.render(reads, funcs, false).map(|s| s.len()).unwrap_or(0);
        }
    }
    let n = rounds * templates.len();
    let per = started.elapsed().as_secs_f64() / n as f64;
    println!(
        "{label}: {n} renders, {:.1} µs per render (discover + render), {} bytes out",
        per * 1e6,
        bytes
    );
}

fn main() {
    let funcs = Funcs::standard_with(
        Arc::new(|k| (k == "APP_ENV").then(|| "staging".to_string())),
        Arc::new(SystemTime::now),
    );
    let mut reads = Reads::new();
    for p in 0..20 {
        reads.secret(
            Read::Get(format!("kv/p{p}")),
            secret(&format!(
                r#"{{"lease_duration":2764800,"data":{{"v":"value-{p}","next":"p{}"}}}}"#,
                (p + 1) % 20
            )),
        );
    }
    let hundred: Vec<Template> = (0..100)
        .map(|t| {
            let (a, b) = (t % 20, (t * 7) % 20);
            let text = format!("{{{{ with secret \"kv/p{a}\" }}}}{{{{ .Data.v }}}} {{{{ with secret (printf \"kv/%s\" .Data.next) }}}}{{{{ .Data.v }}}}{{{{ end }}}}{{{{ end }}}} {{{{ (secret \"kv/p{b}\").Data.v }}}}\n");
            Template::parse(&format!("t{t}"), &text, &funcs).expect("parse")
        })
        .collect();
    time("100 templates over 20 paths", &hundred, &reads, &funcs, 200);

    // The corpus, over answers shaped like the corpus's secrets (KV v2 envelopes).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/templates");
    let mut corpus = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/templates")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let text = std::fs::read_to_string(e.path()).expect("template");
        corpus.push(Template::parse("c", &text, &funcs).expect("parse"));
    }
    let mut reads = Reads::new();
    let kv2 = |d: &str| {
        secret(&format!(
            r#"{{"data":{{"data":{d},"metadata":{{"version":1}}}}}}"#
        ))
    };
    reads.secret(Read::Get("secret/data/app".into()), kv2(r#"{"username":"app","password":"p","host":"db","port":5432,"dbname":"o","ssl":true,"replicas":3,"ratio":0.75,"tags":["a","b"],"empty":"","multiline":"a\nb\n"}"#));
    reads.secret(Read::Get("secret/data/config".into()), kv2(r#"{"log":{"level":"info","format":"json"},"features":{"beta":true,"max_items":100},"servers":[{"name":"a","port":8080},{"name":"b","port":8081}],"yes_word":"yes","num_str":"8080"}"#));
    reads.secret(
        Read::Get("kv/app".into()),
        secret(r#"{"data":{"user":"u","pass":"p","port":6379,"flag":false}}"#),
    );
    time(
        "corpus (53 templates; unanswered reads render as errors)",
        &corpus,
        &reads,
        &funcs,
        200,
    );
}
