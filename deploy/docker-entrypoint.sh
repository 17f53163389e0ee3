#!/bin/sh
# Entry point of the meterflow image. For each secret variable, VAR_FILE may name a file holding its value
# (compose secrets), which keeps tokens and passwords out of `docker inspect` and the compose file.
# Then runs the command, by default `node bin/meterflow.js <role>`.
set -eu

for var in MQTT_PASSWORD INFLUX_TOKEN INFLUX_PASSWORD API_TOKENS; do
  eval "file=\${${var}_FILE:-}"
  [ -n "$file" ] || continue
  eval "current=\${${var}:-}"
  if [ -n "$current" ]; then
    echo "meterflow: both $var and ${var}_FILE are set; set only one" >&2
    exit 64
  fi
  if [ ! -r "$file" ]; then
    echo "meterflow: ${var}_FILE=$file is not a readable file" >&2
    exit 64
  fi
  value="$(cat "$file")"
  export "$var=$value"
  unset "${var}_FILE"
done

exec "$@"
