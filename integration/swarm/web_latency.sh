#!/usr/bin/env bash
# web_latency.sh PORT DATA-DIR USER PASSWORD: signs in to the web UI of the
# reflector on localhost:PORT with curl and prints the median time of 11
# requests (a new TLS connection each) for each page docs/performance.md
# quotes ("Web UI at fleet scale"). Run it while `go run ./integration/swarm
# -work DIR -idle 150s` holds its fleet connected.
set -euo pipefail
port=$1 data=$2 user=$3 password=$4
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
base="https://localhost:$port"
curl -s -o /dev/null --cacert "$data/tls-cert.pem" -c "$jar" -b "$jar" \
  --data-urlencode "username=$user" --data-urlencode "password=$password" "$base/login"
ids=$(seq -f 'swarm-%05g' 0 49 | paste -sd, -)
median() {
  for _ in $(seq 11); do
    curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' \
      --cacert "$data/tls-cert.pem" -b "$jar" "$base$1"
  done | sort -n | awk -v path="$2" 'NR == 6 { printf "%-40s %7.1f ms %9d bytes  %s\n", path, $1 * 1000, $2, $3 }'
}
median /healthz '/healthz'
median / '/ (dashboard, first page of 50)'
median '/?q=nomatch' '/?q=nomatch (scans all)'
median '/?online=false' '/?online=false (scans all)'
median "/status.json?ids=$ids" '/status.json (50 devices)'
median /devices/swarm-05000 '/devices/swarm-05000'
median /audit '/audit'
