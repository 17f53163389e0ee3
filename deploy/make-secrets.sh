#!/bin/sh
# Creates the secrets docker compose mounts (deploy/secrets/*), once: an existing secret is kept, so
# re-running never locks a running stack out. Each value is random and written without a newline.
# SECRETS_DIR overrides the target directory (default: deploy/secrets next to this script).
set -eu

dir="${SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}"
mkdir -p "$dir"
# The directory keeps other host users out; the files stay readable inside the containers, whose
# services run as their own non-root users (compose bind-mounts file secrets as they are).
chmod 700 "$dir"

random() {
  # 32 random bytes, URL- and shell-safe.
  head -c 32 /dev/urandom | base64 | tr -d '\n=+/' | cut -c1-40
}

put() {
  name="$1"
  value="$2"
  if [ -s "$dir/$name" ]; then
    echo "kept    $name"
    return
  fi
  printf '%s' "$value" > "$dir/$name"
  chmod 644 "$dir/$name"
  echo "created $name"
}

put influx_admin_password "$(random)"
put influx_token "$(random)"
put grafana_admin_password "$(random)"
put mqtt_ingest_password "$(random)"
put mqtt_api_password "$(random)"
put mqtt_headend_password "$(random)"
# API_TOKENS: token -> scopes. One token for the billing system, one for operators' tools.
put api_tokens "{\"$(random)\":[\"billing:read\"],\"$(random)\":[\"admin\",\"alerts:write\",\"meters:command\",\"billing:read\"]}"

echo "secrets are in $dir (Grafana: user admin, password in grafana_admin_password)"
