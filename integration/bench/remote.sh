#!/usr/bin/env bash
# remote.sh [ROUNDS]: the `remote` client against curl through the same
# reflector (issue 20), interleaved A/B in one run, medians quoted in
# docs/performance.md ("The remote client").
#
# Starts a real `reflector serve` and a real reflector-agent for device
# pump-17, whose port is a web server (python3 -m http.server) holding a
# 256 MiB file and a 2-byte one, then, ROUNDS times (default 11) each, with
# "direct" (curl to the web server itself) as the loopback reference:
#   throughput: GET of the 256 MiB file with curl through the reflector as
#               its proxy (CONNECT, -p) and with curl through
#               `remote forward` (a local port);
#   latency:    a new connection each: curl -p through the reflector; curl
#               through `remote forward`; `remote connect` as ssh runs it
#               (a process per connection, request on stdin); and
#               `remote help`, the cost of starting the process alone.
# Needs go, curl and python3.
set -euo pipefail
rounds=${1:-11}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/bin/" ./cmd/reflector ./cmd/reflector-agent ./cmd/remote
R="$work/bin/reflector" A="$work/bin/reflector-agent" RM="$work/bin/remote"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) web=$(free_port) data="$work/data"

mkdir -p "$work/www"
truncate -s 256M "$work/www/big"
printf 'ok' >"$work/www/small"
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$web" >/dev/null 2>&1) &
pids+=($!)

"$R" serve --listen "127.0.0.1:$port" --data "$data" --log-level warn >"$work/serve.log" 2>&1 &
pids+=($!)
until grep -q 'fingerprint' "$work/serve.log" 2>/dev/null; do sleep 0.1; done
fp=$(sed -n 's/.*fingerprint: \(sha256:[0-9a-f]*\).*/\1/p' "$work/serve.log")
"$R" group add plant --data "$data" >/dev/null
echo alice-pass | "$R" user add alice --group plant --password-stdin --data "$data" >/dev/null
token=$("$R" token create --user alice --name bench --data "$data" | grep -oE 'rfl_[A-Za-z0-9_-]{32}' | head -1)
secret=$("$R" device add pump-17 --group plant --ports "$web" --data "$data" |
  sed -n "s/.*REFLECTOR_DEVICE_SECRET='\{0,1\}\([A-Za-z0-9_-]*\).*/\1/p" | head -1)
REFLECTOR_DEVICE_SECRET=$secret "$A" --reflector "https://127.0.0.1:$port" --device pump-17 \
  --ports "$web" --fingerprint "$fp" >"$work/agent.log" 2>&1 &
pids+=($!)
until "$R" device list --data "$data" | grep -q online; do sleep 0.1; done

export REMOTE_URL="https://localhost:$port" REMOTE_USER=alice REMOTE_TOKEN=$token REMOTE_FINGERPRINT=$fp
export XDG_CONFIG_HOME="$work/config"
"$RM" forward pump-17 "0:$web" >"$work/forward.log" 2>&1 &
pids+=($!)
until grep -q -- '->' "$work/forward.log" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/forward.log"; exit 1; }
  sleep 0.1
done
local_addr=$(sed -n 's/^\(127\.0\.0\.1:[0-9]*\) -> .*/\1/p' "$work/forward.log")

proxy=(-s -o /dev/null -p -x "https://localhost:$port" --proxy-cacert "$data/tls-cert.pem" --proxy-user "alice:$token")
now() { date +%s%N; }
: >"$work/tp" ; : >"$work/lat"
for i in $(seq "$rounds"); do
  # Throughput, bytes/s (size_download / time_total); direct is the same
  # GET without the reflector, the loopback ceiling.
  curl -s -o /dev/null -w 'direct %{speed_download}\n' "http://127.0.0.1:$web/big" >>"$work/tp"
  curl "${proxy[@]}" -w 'curl-connect %{speed_download}\n' "http://pump-17.localhost:$web/big" >>"$work/tp"
  curl -s -o /dev/null -w 'remote-forward %{speed_download}\n' "http://$local_addr/big" >>"$work/tp"
  # Latency of one new connection and a small request, s.
  curl -s -o /dev/null -w 'direct %{time_total}\n' "http://127.0.0.1:$web/small" >>"$work/lat"
  curl "${proxy[@]}" -w 'curl-connect %{time_total}\n' "http://pump-17.localhost:$web/small" >>"$work/lat"
  curl -s -o /dev/null -w 'remote-forward %{time_total}\n' "http://$local_addr/small" >>"$work/lat"
  t0=$(now)
  printf 'GET /small HTTP/1.0\r\n\r\n' | "$RM" connect pump-17 "$web" >/dev/null
  echo "remote-connect $(( ($(now) - t0) / 1000 ))e-6" >>"$work/lat"
  # What starting the process alone costs, within remote-connect's time.
  t0=$(now)
  "$RM" help >/dev/null
  echo "remote-help $(( ($(now) - t0) / 1000 ))e-6" >>"$work/lat"
done
median() { # file label scale unit
  grep "^$2 " "$1" | awk '{ printf "%.6f\n", $2 }' | sort -g | awk -v n="$rounds" -v l="$2" -v s="$3" -v u="$4" \
    '{ v[NR] = $1 } END { m = v[int((NR + 1) / 2)]; printf "%-16s median %8.1f %s  (min %.1f, max %.1f, n=%d)\n", l, m * s, u, v[1] * s, v[NR] * s, NR }'
}
echo "throughput, 256 MiB GET, $rounds rounds interleaved:"
for l in direct curl-connect remote-forward; do median "$work/tp" "$l" 9.5367431640625e-07 MiB/s; done
echo "one new connection + a 2-byte GET, $rounds rounds interleaved:"
for l in direct curl-connect remote-forward remote-connect remote-help; do median "$work/lat" "$l" 1000 ms; done
