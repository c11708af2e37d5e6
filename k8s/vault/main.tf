# Vault side of the examples in k8s/, as in HashiCorp's Kubernetes auth tutorial:
#
#   vault auth enable kubernetes
#   vault write auth/kubernetes/config kubernetes_host="https://$KUBERNETES_PORT_443_TCP_ADDR:443"
#   vault secrets enable -path=internal kv-v2
#   vault policy write internal-app - <<EOH
#   path "internal/data/database/config" { capabilities = ["read"] }
#   EOH
#   vault write auth/kubernetes/role/internal-app \
#     bound_service_account_names=internal-app bound_service_account_namespaces=app \
#     audience=vault policies=internal-app ttl=1h
#
# Usage (VAULT_ADDR and VAULT_TOKEN in the environment):
#   terraform -chdir=k8s/vault init && terraform -chdir=k8s/vault apply \
#     -var kubernetes_host=https://kubernetes.default.svc:443
#   vault kv put internal/database/config username=db-readonly-username password=db-secret-password

terraform {
  required_version = ">= 1.5"
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 4.0, < 6.0"
    }
  }
}

# Address and token come from VAULT_ADDR / VAULT_TOKEN.
provider "vault" {}

variable "kubernetes_host" {
  description = "Kubernetes API server URL as Vault reaches it (in-cluster Vault: https://kubernetes.default.svc:443)."
  type        = string
  default     = "https://kubernetes.default.svc:443"
}

variable "app_namespace" {
  description = "Namespace of the example workloads (k8s/*.yaml)."
  type        = string
  default     = "app"
}

variable "service_account" {
  description = "Service account the example workloads run as."
  type        = string
  default     = "internal-app"
}

variable "audience" {
  description = "JWT audience; must equal serviceAccountToken.audience of the projected volume in k8s/*.yaml."
  type        = string
  default     = "vault"
}

resource "vault_auth_backend" "kubernetes" {
  type        = "kubernetes"
  path        = "kubernetes"
  description = "Kubernetes service-account JWT login (vault-login)"
}

# Vault runs in the cluster: with no token_reviewer_jwt or kubernetes_ca_cert it uses its own pod's
# service-account token and CA for the TokenReview calls (see the ClusterRoleBinding in
# k8s/rbac.yaml).
resource "vault_kubernetes_auth_backend_config" "kubernetes" {
  backend                = vault_auth_backend.kubernetes.path
  kubernetes_host        = var.kubernetes_host
  disable_iss_validation = true
}

resource "vault_mount" "internal" {
  path        = "internal"
  type        = "kv"
  options     = { version = "2" }
  description = "KV v2 secrets read by the examples"
}

resource "vault_policy" "internal_app" {
  name   = "internal-app"
  policy = <<-EOT
    path "${vault_mount.internal.path}/data/database/config" {
      capabilities = ["read"]
    }
  EOT
}

resource "vault_kubernetes_auth_backend_role" "internal_app" {
  backend                          = vault_auth_backend.kubernetes.path
  role_name                        = "internal-app"
  bound_service_account_names      = [var.service_account]
  bound_service_account_namespaces = [var.app_namespace]
  audience                         = var.audience
  # vault-login renews at about 2/3 of the TTL and logs in again when token_max_ttl is reached.
  token_ttl      = 3600
  token_max_ttl  = 86400
  token_policies = [vault_policy.internal_app.name]
}

# The nginx example (k8s/deployment-nginx-tls.yaml): a PKI engine with its own root CA, a role for
# the Service's names, and a login role whose token may issue from it. With the CLI:
#   vault secrets enable pki && vault secrets tune -max-lease-ttl=87600h pki
#   vault write pki/root/generate/internal common_name=app.svc ttl=87600h key_type=ec
#   vault write pki/roles/nginx allowed_domains=app.svc,app.svc.cluster.local \
#     allow_subdomains=true max_ttl=72h key_type=ec key_bits=256
resource "vault_mount" "pki" {
  path                  = "pki"
  type                  = "pki"
  max_lease_ttl_seconds = 315360000
  description           = "Certificates for the nginx example"
}

resource "vault_pki_secret_backend_root_cert" "pki" {
  backend     = vault_mount.pki.path
  type        = "internal"
  common_name = "app.svc"
  ttl         = 315360000
  key_type    = "ec"
  key_bits    = 256
}

resource "vault_pki_secret_backend_role" "nginx" {
  backend          = vault_mount.pki.path
  name             = "nginx"
  allowed_domains  = ["app.svc", "app.svc.cluster.local"]
  allow_subdomains = true
  # vault-login renews at about 2/3 of the certificate's life; 24h is asked for.
  max_ttl  = 259200
  key_type = "ec"
  key_bits = 256
}

resource "vault_policy" "nginx" {
  name   = "nginx"
  policy = <<-EOT
    path "${vault_mount.pki.path}/issue/${vault_pki_secret_backend_role.nginx.name}" {
      capabilities = ["update"]
    }
  EOT
}

resource "vault_kubernetes_auth_backend_role" "nginx" {
  backend                          = vault_auth_backend.kubernetes.path
  role_name                        = "nginx"
  bound_service_account_names      = [var.service_account]
  bound_service_account_namespaces = [var.app_namespace]
  audience                         = var.audience
  token_ttl                        = 3600
  token_max_ttl                    = 86400
  token_policies                   = [vault_policy.nginx.name]
}

output "login_path" {
  description = "Path vault-login posts to (VAULT_LOGIN_MOUNT=kubernetes, VAULT_LOGIN_ROLE=internal-app)."
  value       = "auth/${vault_auth_backend.kubernetes.path}/login"
}
