#!/bin/sh
# Creates the secrets docker compose mounts (deploy/secrets/*), once: an existing secret is kept, so
# re-running never locks a running stack out. Each value is random and written without a newline.
# SECRETS_DIR overrides the target directory (default: deploy/secrets next to this script).
# MQTT TLS: a private CA (mqtt_ca_cert, mqtt_ca_key) and the broker's certificate (mqtt_server_cert, mqtt_server_key)
# for the names in MQTT_TLS_NAMES (default "DNS:localhost,DNS:mosquitto,IP:127.0.0.1"; add the host name meters
# use, e.g. MQTT_TLS_NAMES="DNS:mqtt.example.net,DNS:mosquitto"). Device certificates: deploy/make-client-cert.sh.
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

if ! command -v openssl >/dev/null 2>&1; then
  echo "make-secrets: openssl is not installed, so no API token hashes or MQTT TLS certificates (install it and run this again)" >&2
  exit 1
fi

b64url() {
  base64 | tr -d '\n=' | tr '+/' '-_'
}

# The API's stored form of a token, as `meterflow token hash` writes it: scrypt$ln=14,r=8,p=1$<salt>$<hash>
# (base64url), computed with openssl so no Node is needed on the host.
token_hash() {
  salt="$(mktemp)"
  head -c 16 /dev/urandom > "$salt"
  salt_hex="$(od -An -tx1 < "$salt" | tr -d ' \n')"
  printf 'scrypt$ln=14,r=8,p=1$%s$%s' "$(b64url < "$salt")" \
    "$(openssl kdf -binary -keylen 32 -kdfopt "pass:$1" -kdfopt "hexsalt:$salt_hex" -kdfopt n:16384 -kdfopt r:8 -kdfopt p:1 SCRYPT | b64url)"
  rm -f "$salt"
}

# API_TOKENS: the tokens' scrypt hashes and names (the api never sees a token at rest). One for the billing system,
# one for operators' tools. The tokens themselves go to api_tokens_plain (mode 600, mounted into no service): hand
# each to its client, then delete the file.
if [ -s "$dir/api_tokens" ]; then
  echo "kept    api_tokens"
else
  billing="$(random)"
  operator="$(random)"
  printf 'billing-system %s\noperator %s\n' "$billing" "$operator" > "$dir/api_tokens_plain"
  chmod 600 "$dir/api_tokens_plain"
  printf '{"%s":{"id":"billing-system","scopes":["billing:read"]},"%s":{"id":"operator","scopes":["admin","alerts:write","meters:command","billing:read"]}}' \
    "$(token_hash "$billing")" "$(token_hash "$operator")" > "$dir/api_tokens"
  chmod 644 "$dir/api_tokens"
  echo "created api_tokens (hashes), api_tokens_plain (the tokens: hand them out, then delete the file)"
fi

# MQTT TLS. The CA key never leaves the host (no service mounts it); it only signs server and device certificates.
if [ -s "$dir/mqtt_ca_cert" ] && [ -s "$dir/mqtt_ca_key" ]; then
  echo "kept    mqtt_ca_cert, mqtt_ca_key"
else
  openssl req -x509 -new -newkey rsa:3072 -nodes -sha256 -days 3650 -subj "/O=meterflow/CN=meterflow MQTT CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/mqtt_ca_key" -out "$dir/mqtt_ca_cert" 2>/dev/null
  chmod 600 "$dir/mqtt_ca_key"
  chmod 644 "$dir/mqtt_ca_cert"
  rm -f "$dir/mqtt_server_cert" "$dir/mqtt_server_key" # a new CA needs a new server certificate
  echo "created mqtt_ca_cert, mqtt_ca_key"
fi
if [ -s "$dir/mqtt_server_cert" ] && [ -s "$dir/mqtt_server_key" ]; then
  echo "kept    mqtt_server_cert, mqtt_server_key"
else
  names="${MQTT_TLS_NAMES:-DNS:localhost,DNS:mosquitto,IP:127.0.0.1}"
  ext="$(mktemp)"
  trap 'rm -f "$ext" "$dir/mqtt_server.csr"' EXIT
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$names" > "$ext"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/O=meterflow/CN=mosquitto" \
    -keyout "$dir/mqtt_server_key" -out "$dir/mqtt_server.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/mqtt_server.csr" -CA "$dir/mqtt_ca_cert" -CAkey "$dir/mqtt_ca_key" \
    -CAcreateserial -CAserial "$dir/mqtt_ca.srl" -extfile "$ext" -out "$dir/mqtt_server_cert" 2>/dev/null
  # Read by mosquitto's own user inside its container (compose mounts file secrets as they are).
  chmod 644 "$dir/mqtt_server_cert" "$dir/mqtt_server_key"
  echo "created mqtt_server_cert, mqtt_server_key ($names)"
fi

echo "secrets are in $dir (Grafana: user admin, password in grafana_admin_password)"
