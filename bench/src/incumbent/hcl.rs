//! The configuration file of `bao agent` (OpenBao Agent, the open fork of Vault Agent) for one
//! client: auto-auth with the kubernetes method reading the JWT from a file, a file sink for the
//! token, and optionally one template that renders a KV secret's field.

use std::path::Path;
use std::time::Duration;

/// One KV secret the agent renders with a template.
#[derive(Clone, Debug)]
pub struct Template {
    /// The API path of the secret (KV v2: `internal/data/database/config`).
    pub path: String,
    /// The field written to the destination (KV v2: under `.Data.data`).
    pub field: String,
    /// The file the template renders to.
    pub destination: String,
    /// `template_config.static_secret_render_interval`: how often the agent reads it again.
    pub interval: Duration,
}

/// A template given by its text, rendered as is (the certificate scenes' `secret` and
/// `pkiCert` templates).
#[derive(Clone, Debug)]
pub struct RawTemplate {
    /// consul-template's text.
    pub contents: String,
    /// The file it renders to.
    pub destination: String,
}

/// What one agent is told.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `vault.address`.
    pub vault_addr: String,
    /// The kubernetes auth role.
    pub role: String,
    /// The projected service-account token file (`token_path`), re-read at each login.
    pub jwt_file: String,
    /// The file sink's path.
    pub token_file: String,
    /// A KV secret to render, or none.
    pub template: Option<Template>,
    /// More templates, given by their text.
    pub raw_templates: Vec<RawTemplate>,
}

impl AgentConfig {
    /// A config whose paths are taken from `Path`s (lossy: the bench's own scratch paths are UTF-8).
    pub fn new(vault_addr: &str, role: &str, jwt_file: &Path, token_file: &Path) -> AgentConfig {
        AgentConfig {
            vault_addr: vault_addr.into(),
            role: role.into(),
            jwt_file: jwt_file.to_string_lossy().into_owned(),
            token_file: token_file.to_string_lossy().into_owned(),
            template: None,
            raw_templates: Vec::new(),
        }
    }

    /// The HCL text. Everything else stays at the agent's defaults (backoff 1 s to 5 m, no
    /// listener, no cache, no exit on error): the comparison is with the incumbent as shipped.
    pub fn render(&self) -> String {
        let mut out = format!(
            "vault {{\n  address = {}\n}}\n\
             auto_auth {{\n  method \"kubernetes\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      role = {}\n      token_path = {}\n    }}\n  }}\n\
             \x20 sink \"file\" {{\n    config = {{\n      path = {}\n    }}\n  }}\n}}\n",
            quote(&self.vault_addr),
            quote(&self.role),
            quote(&self.jwt_file),
            quote(&self.token_file),
        );
        if let Some(t) = &self.template {
            // consul-template's own text: `secret` reads the path, KV v2 data sits under .Data.data.
            let contents = format!(
                "{{{{ with secret {} }}}}{{{{ .Data.data.{} }}}}{{{{ end }}}}",
                quote(&t.path),
                t.field
            );
            out.push_str(&format!(
                "template_config {{\n  static_secret_render_interval = \"{}s\"\n}}\n\
                 template {{\n  contents = {}\n  destination = {}\n}}\n",
                t.interval.as_secs().max(1),
                quote(&contents),
                quote(&t.destination),
            ));
        }
        for t in &self.raw_templates {
            out.push_str(&format!(
                "template {{\n  contents = {}\n  destination = {}\n}}\n",
                quote(&t.contents),
                quote(&t.destination),
            ));
        }
        out
    }
}

/// An HCL string literal with backslashes, double quotes and newlines escaped. (The agent parses HCL 1,
/// which has no `$${` escape; the bench's own paths never hold `${`.)
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_hcl_would_read() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        // A literal newline would end the string for HCL.
        assert_eq!(quote("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn auth_and_sink_without_template() {
        let c = AgentConfig::new(
            "http://127.0.0.1:8200",
            "default",
            Path::new("/tmp/sa/token"),
            Path::new("/tmp/out/token"),
        );
        let hcl = c.render();
        assert!(hcl.contains("address = \"http://127.0.0.1:8200\""), "{hcl}");
        assert!(hcl.contains("method \"kubernetes\""), "{hcl}");
        assert!(hcl.contains("role = \"default\""), "{hcl}");
        assert!(hcl.contains("token_path = \"/tmp/sa/token\""), "{hcl}");
        assert!(hcl.contains("sink \"file\""), "{hcl}");
        assert!(hcl.contains("path = \"/tmp/out/token\""), "{hcl}");
        assert!(!hcl.contains("template"), "{hcl}");
        // Braces balance, or the agent refuses the file.
        assert_eq!(hcl.matches('{').count(), hcl.matches('}').count());
    }

    #[test]
    fn template_reads_the_field_at_the_interval() {
        let mut c = AgentConfig::new("http://x", "r", Path::new("/j"), Path::new("/t"));
        c.template = Some(Template {
            path: "internal/data/database/config".into(),
            field: "password".into(),
            destination: "/out/db_password".into(),
            interval: Duration::from_secs(10),
        });
        let hcl = c.render();
        assert!(
            hcl.contains("static_secret_render_interval = \"10s\""),
            "{hcl}"
        );
        assert!(
            hcl.contains(
                r#"contents = "{{ with secret \"internal/data/database/config\" }}{{ .Data.data.password }}{{ end }}""#
            ),
            "{hcl}"
        );
        assert!(hcl.contains("destination = \"/out/db_password\""), "{hcl}");
        assert_eq!(hcl.matches('{').count(), hcl.matches('}').count());
    }

    #[test]
    fn raw_templates_are_quoted_as_they_are() {
        let mut c = AgentConfig::new("http://x", "r", Path::new("/j"), Path::new("/t"));
        c.raw_templates.push(RawTemplate {
            contents: r#"{{ with pkiCert "pki/issue/web" "common_name=a.b" }}{{ .Cert }}{{ end }}"#
                .into(),
            destination: "/out/web.pem".into(),
        });
        let hcl = c.render();
        assert!(
            hcl.contains(
                r#"contents = "{{ with pkiCert \"pki/issue/web\" \"common_name=a.b\" }}{{ .Cert }}{{ end }}""#
            ),
            "{hcl}"
        );
        assert!(hcl.contains("destination = \"/out/web.pem\""), "{hcl}");
        assert!(!hcl.contains("template_config"), "{hcl}");
    }
}
