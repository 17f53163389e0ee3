#!/bin/sh
# Builds mosquitto's password file (hashed) from the compose secrets, so no plain-text password reaches
# the broker's config. Runs once per `docker compose up` in the mosquitto image (mosquitto-auth service).
#   SECRETS_DIR     where the secrets are (default /run/secrets)
#   PASSWD_FILE     the file to write (default /mosquitto/auth/passwd)
#   PASSWD_OWNER    uid:gid that owns it; mosquitto refuses a password file others can read (default 1883:1883)
# Optional SECRETS_DIR/mqtt_device_credentials: one "meterId:password" (or "concentratorId:password") a line,
# for real meters; each such account is confined to its own topics by the ACL.
set -eu

secrets="${SECRETS_DIR:-/run/secrets}"
out="${PASSWD_FILE:-/mosquitto/auth/passwd}"
owner="${PASSWD_OWNER-1883:1883}"

secret() {
  if [ ! -s "$secrets/$1" ]; then
    echo "make-passwd: secret $1 is missing or empty in $secrets (run deploy/make-secrets.sh)" >&2
    exit 1
  fi
  # Secrets are written without a trailing newline; strip one anyway in case a person edited the file.
  tr -d '\r\n' < "$secrets/$1"
}

umask 077
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
{
  printf 'ingest@meterflow:%s\n' "$(secret mqtt_ingest_password)"
  printf 'api@meterflow:%s\n' "$(secret mqtt_api_password)"
  printf 'headend@meterflow:%s\n' "$(secret mqtt_headend_password)"
  if [ -f "$secrets/mqtt_device_credentials" ]; then
    # Device ids use [A-Za-z0-9_.:-]; blank lines and # comments are skipped.
    grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' "$secrets/mqtt_device_credentials" | tr -d '\r' || true
  fi
} > "$tmp"
# One pass hashes every "user:password" line in place (-U), which stays fast for 100k meters.
mosquitto_passwd -U "$tmp"
if [ -n "$owner" ]; then chown "$owner" "$tmp"; fi
chmod 600 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "make-passwd: wrote $(wc -l < "$out") accounts to $out"
