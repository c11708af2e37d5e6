//! `sys/health` and `sys/seal-status`: unauthenticated, answered sealed or not, as OpenBao 2.7.2
//! answers them (the Vault flavour gives the same bodies, unverified).
//!
//! # What is emulated (measured on `bao server -dev`)
//! - `GET sys/health`: 200 with `initialized`, `sealed`, `standby`, the replication modes,
//!   `server_time_utc`, `version`, `cluster_name`, `cluster_id`; sealed: 503 with `sealed` and
//!   `standby` true, the replication modes `unknown` and no cluster fields. `?activecode=N` and
//!   `?sealedcode=N` change the status; a value that is not a number is 400 `{"errors":[]}`. Any
//!   `X-Vault-Namespace` is 400 `operation unavailable in namespaces`; a method other than GET or
//!   HEAD is 405 `{"errors":[]}`.
//! - `GET sys/seal-status`: 200 always, whatever the namespace header, with `sealed` and the
//!   seal's shape; the cluster fields only while unsealed.

use std::time::SystemTime;

use serde_json::json;

use crate::paths::clean;
use crate::reply::Reply;
use crate::tokens::unix_secs;

/// What the health endpoints report about the server.
pub(crate) struct Cluster {
    pub name: String,
    pub id: String,
}

const VERSION: &str = "2.7.2";

/// The answer for `sys/health` or `sys/seal-status`, `None` for any other path.
pub(crate) fn answer(
    cluster: &Cluster,
    method: &str,
    namespace_header: &str,
    path: &str,
    query: &str,
    sealed: bool,
    now: SystemTime,
) -> Option<Reply> {
    match path {
        "sys/health" => Some(health(
            cluster,
            method,
            namespace_header,
            query,
            sealed,
            now,
        )),
        "sys/seal-status" if method == "GET" => Some(seal_status(cluster, sealed)),
        "sys/seal-status" => Some(Reply::errors::<&str>(405, &[])),
        _ => None,
    }
}

fn health(
    cluster: &Cluster,
    method: &str,
    namespace_header: &str,
    query: &str,
    sealed: bool,
    now: SystemTime,
) -> Reply {
    if !matches!(method, "GET" | "HEAD") {
        return Reply::errors::<&str>(405, &[]);
    }
    if !matches!(clean(namespace_header), "" | "root") {
        return Reply::error(400, "operation unavailable in namespaces");
    }
    let code = |name: &str, default: u16| -> Result<u16, Reply> {
        match query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
        {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| Reply::errors::<&str>(400, &[])),
        }
    };
    let status = match code(
        if sealed { "sealedcode" } else { "activecode" },
        if sealed { 503 } else { 200 },
    ) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let mut body = json!({
        "initialized": true,
        "sealed": sealed,
        "standby": sealed,
        "replication_performance_mode": if sealed { "unknown" } else { "disabled" },
        "replication_dr_mode": if sealed { "unknown" } else { "disabled" },
        "server_time_utc": unix_secs(now),
        "version": VERSION,
    });
    if !sealed {
        body["cluster_name"] = json!(cluster.name);
        body["cluster_id"] = json!(cluster.id);
    }
    Reply::json(status, body)
}

fn seal_status(cluster: &Cluster, sealed: bool) -> Reply {
    let mut body = json!({
        "type": "shamir",
        "initialized": true,
        "sealed": sealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "recovery_seal": false,
        "version": VERSION,
        "commit_date": "2026-10-26T20:32:27Z",
        "migration": false,
        "storage_type": "inmem",
    });
    if !sealed {
        body["cluster_name"] = json!(cluster.name);
        body["cluster_id"] = json!(cluster.id);
    }
    Reply::json(200, body)
}
