# The Vault side of the Vault Kubernetes-auth tutorial (learn.verifa.io, "Kubernetes
# authentication method", its k8s-auth/main.tf), unchanged but for the additions marked
# "vault-login:" below, each with its reason. Vault runs outside the cluster (the tutorial's
# Docker container `dev-vault`), so it reviews JWTs with the long-lived token of the `vault`
# service account (bound to system:auth-delegator) from the Secret `vault-token` (reviewer.yaml):
#
#   kubectl apply -f k8s/tutorial/reviewer.yaml
#   export TF_VAR_token_reviewer_jwt=$(kubectl get secret vault-token --output='go-template={{ .data.token }}' | base64 --decode)
#   export TF_VAR_kubernetes_ca_cert=$(kubectl config view --raw --minify --flatten --output='jsonpath={.clusters[].cluster.certificate-authority-data}')
#   export TF_VAR_kubernetes_host=$(kubectl config view --raw --minify --flatten --output='jsonpath={.clusters[].cluster.server}')
#   terraform -chdir=k8s/tutorial/vault init && terraform -chdir=k8s/tutorial/vault apply   # VAULT_ADDR, VAULT_TOKEN set
#
# kubernetes_host must be reachable from Vault, not only from your machine: with k3d, the
# server's name on the Docker network (e.g. https://k3d-<cluster>-server-0:6443), not
# https://0.0.0.0:<port>. Otherwise every login is a bare 403 "permission denied".

# vault-login: pin the provider (the tutorial relies on whatever `terraform init` picks).
terraform {
  required_version = ">= 1.5"
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 4.0, < 6.0"
    }
  }
}

provider "vault" {
  # Configured with environment variables:
  # VAULT_ADDR
  # VAULT_TOKEN
}

variable "kubernetes_host" {
  type        = string
  description = "URL for the Kubernetes API."
}

variable "kubernetes_ca_cert" {
  type        = string
  description = "Base64 encoded CA certificate of the cluster."
}

variable "token_reviewer_jwt" {
  type        = string
  description = "JWT token of the Vault Service Account."
  # vault-login: keep the reviewer's long-lived token out of plan output and logs.
  sensitive = true
}

resource "vault_auth_backend" "this" {
  type = "kubernetes"
}

resource "vault_kubernetes_auth_backend_config" "this" {
  backend                = vault_auth_backend.this.path
  kubernetes_host        = var.kubernetes_host
  kubernetes_ca_cert     = base64decode(var.kubernetes_ca_cert)
  token_reviewer_jwt     = var.token_reviewer_jwt
  issuer                 = "api"
  disable_iss_validation = "true" # k8s API checks it
}

resource "vault_kubernetes_auth_backend_role" "default" {
  backend                          = vault_auth_backend.this.path
  role_name                        = "default"
  bound_service_account_names      = ["default"]
  bound_service_account_namespaces = ["default"]
  token_ttl                        = 3600
  token_policies                   = ["default"]
  audience                         = "k3s"
  # vault-login: renewals stop extending a token at its max TTL. Without this it is the mount's
  # 768 h: a token (and any leak of it) would live 32 days on renewals alone. With 24 h,
  # vault-login renews at about 2/3 of the TTL, sees Vault cap the last renewal, and logs in
  # again with a fresh service-account JWT before the token expires, so a deleted service
  # account or a changed role takes effect within a day.
  token_max_ttl = 86400
}

# vault-login: what VAULT_LOGIN_MOUNT and VAULT_LOGIN_ROLE in login-app.yaml must match.
output "login_path" {
  description = "Path vault-login posts to (VAULT_LOGIN_MOUNT=kubernetes, the default; VAULT_LOGIN_ROLE=default)."
  value       = "auth/${vault_auth_backend.this.path}/login"
}
