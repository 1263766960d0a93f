#!/usr/bin/env bash
# Durable create-command over a real socket with wrk, against a bare axum
# route measured in the same run. Prints both and their ratio.
#
#   bash benches/http-load.sh [seconds] [connections] [devices]
#
# Needs wrk (apt-get install wrk), curl and python3. Everything runs on this
# machine: wrk takes one thread, the servers share the rest.
# STORE=memory runs devcmd with --in-memory (no sync before 201), to see what
# durability costs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
devices=${3:-5000}
cargo build --release -q -p devcmd -p devcmd-benches --bin devcmd --bin bare-axum
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf '[[apps]]\nid = "bench"\nsecret = "bench-secret"\nquota = { calls = 4000000000, period_s = 1 }\n' > "$work/bench.toml"
extra=()
[ "${STORE:-fjall}" = memory ] && extra=(--in-memory)
RUST_LOG=warn ./target/release/devcmd serve --data-dir "$work/data" --config "$work/bench.toml" "${extra[@]}" \
  --listen 127.0.0.1:18743 > "$work/serve.log" &
./target/release/bare-axum 127.0.0.1:18744 > "$work/bare.log" &
for _ in $(seq 100); do
  grep -q '^ready' "$work/serve.log" 2>/dev/null && grep -q listening "$work/bare.log" 2>/dev/null && break
  sleep 0.1
done
python3 - "$work" "$devices" <<'PY'
import http.client, json, sys
work, n = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", 18743)
c.request("POST", "/iocm/app/sec/v1.1.0/login", "appId=bench&secret=bench-secret",
          {"content-type": "application/x-www-form-urlencoded"})
token = json.loads(c.getresponse().read())["accessToken"]
h = {"app_key": "bench", "authorization": "Bearer " + token, "content-type": "application/json"}
ids = []
for i in range(n):
    c.request("POST", "/iocm/app/reg/v1.1.0/deviceCredentials", json.dumps({"nodeId": "n%d" % i}), h)
    ids.append(json.loads(c.getresponse().read())["deviceId"])
with open(work + "/create.lua", "w") as f:
    f.write("local ids = {%s}\n" % ",".join('"%s"' % d for d in ids))
    f.write('wrk.method = "POST"\n')
    f.write('wrk.headers["app_key"] = "bench"\n')
    f.write('wrk.headers["authorization"] = "Bearer %s"\n' % token)
    f.write('wrk.headers["content-type"] = "application/json"\n')
    f.write("local i = 0\n")
    f.write("request = function()\n  i = i + 1\n  local d = ids[(i % #ids) + 1]\n")
    f.write('  return wrk.format(nil, "/iocm/app/cmd/v1.4.0/deviceCommands", nil, '
            '\'{"deviceId":"\' .. d .. \'","command":{"serviceId":"Meter","method":"SET","paras":{"value":1}}}\')\nend\n')
    f.write("local non201 = 0\nresponse = function(status, h, b)\n  if status ~= 201 then non201 = non201 + 1 end\nend\n")
    f.write('done = function(s, l, r)\n  io.write(string.format("non-201 answers: %d (counted on one thread)\\n", non201))\nend\n')
PY
echo "== bare axum GET /hello (c=$conns, ${secs}s)"
wrk -t1 -c"$conns" -d"${secs}s" --latency http://127.0.0.1:18744/hello | tee "$work/bare.txt"
echo "== devcmd POST deviceCommands, durable (c=$conns, ${secs}s)"
if [ -n "${TOP_OUT:-}" ]; then (sleep 3; top -H -b -n 1 -d 1 -p "$(pgrep -f "devcmd serve --data-dir $work")" > "$TOP_OUT") & fi
if [ -n "${PERF_OUT:-}" ]; then (sleep 1; perf record -e cpu-clock -F 999 -g -o "$PERF_OUT" -p "$(pgrep -f "devcmd serve --data-dir $work")" -- sleep 5 >/dev/null 2>&1) & fi
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/create.lua" http://127.0.0.1:18743 | tee "$work/create.txt"
bare=$(awk '/Requests\/sec/ {print $2}' "$work/bare.txt")
create=$(awk '/Requests\/sec/ {print $2}' "$work/create.txt")
python3 -c "print('ratio create/bare = %.2f' % ($create / $bare))"
