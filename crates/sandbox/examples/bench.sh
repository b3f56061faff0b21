#!/bin/sh
# Times sandbox-run against bubblewrap with the equivalent command line (about 25 mounts,
# /bin/true), with and without a network namespace; prints medians of N runs.
# Needs: bubblewrap, hyperfine; build first: cargo build --release -p cairn-sandbox --example sandbox-run
set -eu
N=${N:-200}
R=${R:-${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n "s/^host: //p")/release/examples/sandbox-run}
B="bwrap $($R --print-bwrap -- /bin/true | sed 's|--ro-bind-data 3 /etc/passwd|--ro-bind /etc/passwd /etc/passwd|')"
BN=$(echo "$B" | sed 's|--unshare-cgroup|--unshare-cgroup --unshare-net|')
OUT=$(mktemp)
hyperfine -N -w 20 -r "$N" --export-json "$OUT" \
  -n cairn "$R -- /bin/true" -n bwrap "$B" \
  -n cairn-net "$R --net -- /bin/true" -n bwrap-net "$BN" >/dev/null 2>&1
python3 - "$OUT" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
for name in ["cairn", "bwrap", "cairn-net", "bwrap-net"]:
    x = r[name]
    print(f"{name:10} median {x['median']*1000:6.2f} ms  mean {x['mean']*1000:6.2f} ms  min {x['min']*1000:6.2f} ms")
for a, b in [("cairn", "bwrap"), ("cairn-net", "bwrap-net")]:
    print(f"{a} / {b} (median): {r[a]['median'] / r[b]['median']:.2f}")
PY
rm -f "$OUT"
