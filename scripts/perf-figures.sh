#!/bin/sh
# perf-figures.sh reproduces every figure of docs/performance.md's summary
# table in one go, and the side-by-side run against Dendrite 0.13.8 when
# its binary is there: it builds matrixos and matrixos-bench outside the
# repository, records the machine (CPU model, cores, commit, load average
# before and after), runs each command of the summary three times (the
# tool prints the median, each run and the server's CPU per operation)
# and writes everything to one directory, figures.md holding the rows to
# paste. Run it on a quiet machine: the load average before is printed
# and recorded, and figures taken above 0.5 are for comparison only.
#
# Usage: scripts/perf-figures.sh [--quick] [--no-dendrite] [--out DIR]
#   --quick        fewer messages per run (for a check: 11.5 minutes at load
#                  average 20 to 30 on two cores, less on a quiet machine)
# Each step is capped (--duration: 6, 2, 2 and 4 minutes), so the whole run
# ends within about 15 minutes plus the build; a step cut short says so in
# figures.md.
#   --no-dendrite  skip the side-by-side run
#   --out DIR      where the results go (default /tmp/matrixos-perf-DATE)
# Dendrite is $MATRIXOS_DENDRITE, ~/.cache/matrixos/dendrite-v0.13.8/dendrite
# (where .ci/run installs it) or dendrite on PATH.
set -eu

quick=0
dendrite=1
out=/tmp/matrixos-perf-$(date -u +%Y%m%dT%H%M%SZ)
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--no-dendrite) dendrite=0 ;;
	--out) out=$2; shift ;;
	*) echo "usage: $0 [--quick] [--no-dendrite] [--out DIR]" >&2; exit 2 ;;
	esac
	shift
done

repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out/bin"
export GOEXPERIMENT=jsonv2
export PATH="$PATH:/usr/local/go/bin"
echo "building into $out/bin"
(cd "$repo" && go build -tags goolm -o "$out/bin/matrixos" ./cmd/matrixos && go build -o "$out/bin/matrixos-bench" ./cmd/matrixos-bench)
bench="$out/bin/matrixos-bench"
node="$out/bin/matrixos"

if [ "$quick" = 1 ]; then
	messages=200 iterations=100 messages32=50 dmessages=20 diterations=20
else
	messages=500 iterations=200 messages32=100 dmessages=50 diterations=50
fi

figures="$out/figures.md"
{
	echo "# Figures of docs/performance.md's summary"
	echo
	echo "- Commit: $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD || echo ' (with local changes)')"
	echo "- Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(uname -sr); $(go version | cut -d' ' -f3)"
	echo "- Started: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	[ "$quick" = 1 ] && echo "- --quick: fewer messages per run than the summary's commands"
	echo
} > "$figures"
load=$(cut -d' ' -f1 /proc/loadavg)
echo "load average before: $load"
if awk "BEGIN { exit !($load > 0.5) }"; then
	echo "WARNING: load average $load is above 0.5: the machine is not quiet, the figures are for comparison only" | tee -a "$figures"
	echo >> "$figures"
fi

# step NAME CAP ARGS... runs the load tool, keeping its table (stdout) and
# log (stderr), and appends its Markdown figures to figures.md.
step() {
	name=$1 cap=$2
	shift 2
	echo "== $name: matrixos-bench $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
	status=0
	"$bench" --duration "$cap" "$@" > "$out/$name.txt" 2> "$out/$name.log" || status=$?
	{
		echo "## $name"
		echo
		[ "$status" = 0 ] || echo "(the tool exited with status $status: see $name.log)"
		sed -n '/^Figures (median/,$p' "$out/$name.txt"
		echo
	} >> "$figures"
}

# The summary's three commands (docs/performance.md, "Summary").
step all 6m --spawn "$node" --users 50,200 --runs 3 --messages "$messages" --iterations "$iterations"
step send32x50 2m --spawn "$node" --scenario send --senders 32 --send-rooms 50 --messages "$messages32" --runs 3
step send32 2m --spawn "$node" --scenario send --senders 32 --messages "$messages32" --runs 3

if [ "$dendrite" = 1 ]; then
	dbin=${MATRIXOS_DENDRITE:-}
	[ -n "$dbin" ] || dbin="${XDG_CACHE_HOME:-$HOME/.cache}/matrixos/dendrite-v0.13.8/dendrite"
	[ -x "$dbin" ] || dbin=$(command -v dendrite || true)
	if [ -n "$dbin" ] && [ -x "$dbin" ]; then
		step dendrite 4m --spawn "$node" --versus "$dbin" --scenario send,wakeup \
			--messages "$dmessages" --iterations "$diterations" --runs 3 --settle-timeout 60s
	else
		echo "Dendrite not found (set MATRIXOS_DENDRITE): side-by-side run skipped" | tee -a "$figures"
	fi
fi

echo "- Finished: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)" >> "$figures"
echo "figures: $figures"
