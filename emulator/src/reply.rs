//! An HTTP answer before it is put on the wire, and the shapes every endpoint shares: Vault's
//! `{"errors":[...]}`, the `go-multierror` text its router wraps some errors in, and the
//! response envelope.

use serde_json::{json, Value};

use crate::flavour::Flavour;
use crate::tokens::random_uuid;

/// An HTTP answer before it is put on the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Json(Value),
    Html(String),
    /// 8 MiB of JSON-looking junk, streamed.
    Oversized,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Json(value),
        }
    }

    /// 204 No Content: what Vault answers a successful revocation.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Vault's error shape: `{"errors":[...]}`.
    pub fn errors<S: AsRef<str>>(status: u16, errors: &[S]) -> Reply {
        let list: Vec<&str> = errors.iter().map(AsRef::as_ref).collect();
        Reply::json(status, json!({ "errors": list }))
    }

    /// One bare message: what backends answer (`missing role`, `lease not found`).
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::errors(status, &[message])
    }

    /// One message folded into `go-multierror`'s text (`1 error occurred:\n\t* ...\n\n`), as
    /// the router wraps an ACL denial of a valid token, an unsupported operation on an
    /// authenticated route and the token store's 500s.
    pub fn wrapped(status: u16, message: &str) -> Reply {
        Reply::error(status, &multi_error(&[message]))
    }

    /// 403 for a token that is missing (`sent` false), unknown, expired or revoked.
    pub fn bad_token(flavour: Flavour, sent: bool) -> Reply {
        match (flavour, sent) {
            (Flavour::OpenBao, _) => Reply::error(403, "permission denied"),
            (Flavour::Vault, false) => Reply::wrapped(403, "permission denied"),
            (Flavour::Vault, true) => {
                Reply::error(403, &multi_error(&["permission denied", "invalid token"]))
            }
        }
    }

    /// 403 for a valid token whose policies do not grant the request.
    pub fn acl_denied() -> Reply {
        Reply::wrapped(403, "permission denied")
    }
}

/// `go-multierror`'s text for `messages`.
pub(crate) fn multi_error(messages: &[&str]) -> String {
    let mut text = match messages.len() {
        1 => "1 error occurred:\n".to_string(),
        n => format!("{n} errors occurred:\n"),
    };
    for m in messages {
        text.push_str(&format!("\t* {m}\n"));
    }
    text.push('\n');
    text
}

/// The standard response envelope; `mount_type` only where the flavour sends it.
pub(crate) fn envelope(flavour: Flavour, parts: Envelope) -> Value {
    let mut v = json!({
        "request_id": random_uuid(),
        "lease_id": parts.lease_id,
        "renewable": parts.renewable,
        "lease_duration": parts.lease_duration,
        "data": parts.data,
        "wrap_info": null,
        "warnings": if parts.warnings.is_empty() { Value::Null } else { json!(parts.warnings) },
        "auth": parts.auth,
    });
    if flavour.sends_mount_type() {
        v["mount_type"] = json!(parts.mount_type);
    }
    v
}

/// The fields of an [`envelope`] that differ between answers.
pub(crate) struct Envelope<'a> {
    pub lease_id: &'a str,
    pub renewable: bool,
    pub lease_duration: i64,
    pub data: Value,
    pub auth: Value,
    pub warnings: &'a [String],
    pub mount_type: &'a str,
}

impl<'a> Envelope<'a> {
    /// An answer with `data` and nothing else: no lease, no auth, no warnings.
    pub fn data(data: Value, mount_type: &'a str) -> Envelope<'a> {
        Envelope {
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data,
            auth: Value::Null,
            warnings: &[],
            mount_type,
        }
    }
}

/// What a read needs besides the engine: who asks, when, and how to answer.
pub(crate) struct ReadContext<'a> {
    pub flavour: Flavour,
    /// The namespace's id, outside the root namespace (for lease ids).
    pub nsid: Option<String>,
    /// The token that reads (a dynamic secret's lease dies with it).
    pub token: &'a str,
    /// Its display name (database user names start with it).
    pub display_name: String,
    /// The query string, without `?`.
    pub query: &'a str,
    pub now: std::time::SystemTime,
}
