#!/usr/bin/env bash
# api_latency.sh PORT DATA-DIR TOKEN: the median time of 11 curl requests
# (a new TLS connection each) to the REST API of the reflector on
# localhost:PORT, for each listing docs/performance.md quotes ("REST API at
# fleet scale"). Run it while `go run ./integration/swarm -work DIR -idle
# 150s` holds its fleet connected; see docs/performance.md for the steps.
set -euo pipefail
port=$1 data=$2 token=$3
median() {
  for _ in $(seq 11); do
    curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' \
      --cacert "$data/tls-cert.pem" -H "Authorization: Bearer $token" "https://localhost:$port$1"
  done | sort -n | awk -v path="$1" 'NR == 6 { printf "%-45s %7.1f ms %9d bytes  %s\n", path, $1 * 1000, $2, $3 }'
}
for path in /healthz /api/v1/me '/api/v1/devices?limit=1' '/api/v1/devices?limit=100' \
  '/api/v1/devices?limit=1000' '/api/v1/devices?limit=100&q=nomatch' '/api/v1/devices?limit=100&online=false' \
  /api/v1/devices/swarm-05000 /my-devices/api/devices '/api/v1/audit?limit=100'; do
  median "$path"
done
