#!/bin/sh
# Issues a client certificate for one meter, concentrator or service account, signed by the MQTT CA of
# deploy/make-secrets.sh, for the broker's client-certificate listener (8884): its CN is the account name, which
# Mosquitto takes as the username (use_identity_as_username), so the ACL confines it exactly as a password account.
#   deploy/make-client-cert.sh M-000123 [out-dir]          -> out-dir/M-000123.crt, out-dir/M-000123.key
#   deploy/make-client-cert.sh headend@meterflow [out-dir]
# SECRETS_DIR: where mqtt_ca_cert and mqtt_ca_key are (default deploy/secrets); DAYS: validity (default 825).
set -eu

id="${1:-}"
case "$id" in
  '' | *[!A-Za-z0-9_.:@-]*)
    echo "usage: $0 <meterId, concentratorId or service account, of [A-Za-z0-9_.:@-]> [out-dir]" >&2
    exit 64
    ;;
esac
secrets="${SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}"
out="${2:-.}"
for f in mqtt_ca_cert mqtt_ca_key; do
  if [ ! -s "$secrets/$f" ]; then
    echo "make-client-cert: $secrets/$f is missing (run deploy/make-secrets.sh)" >&2
    exit 1
  fi
done
mkdir -p "$out"
umask 077
ext="$(mktemp)"
csr="$(mktemp)"
trap 'rm -f "$ext" "$csr"' EXIT
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$ext"
openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/O=meterflow/CN=$id" -keyout "$out/$id.key" -out "$csr" 2>/dev/null
openssl x509 -req -sha256 -days "${DAYS:-825}" -in "$csr" -CA "$secrets/mqtt_ca_cert" -CAkey "$secrets/mqtt_ca_key" \
  -CAcreateserial -CAserial "$secrets/mqtt_ca.srl" -extfile "$ext" -out "$out/$id.crt" 2>/dev/null
echo "wrote $out/$id.crt and $out/$id.key (CN=$id); the client also needs mqtt_ca_cert to trust the broker"
