#!/usr/bin/env bash
# quantize-vs-llama.sh runs llama.cpp's llama_model_quantize (through lq,
# built from llama-quantize.c) and gantry quantize on the same model,
# interleaved, pinned with taskset, best of N, and checks that the outputs
# are byte-identical. It prints one Markdown row per type.
#
#   quantize-vs-llama.sh MODEL THREADS CPUS N TYPE...
#   e.g. quantize-vs-llama.sh /tmp/bench/tinyllama-f16.gguf 1 1 2 q8_0 q4_0 q4_k_m
#
# LQ and GANTRY name the binaries (default /tmp/bench/lq and /tmp/gantry).
# OUT is the directory the outputs (and cp's copy) go to, by default the
# model's; OUT=/dev/shm keeps the disk out of the comparison, where a slow
# or erratic disk would otherwise time the writeback (and gantry's fsync).
# Before every run the page cache is warmed with the model, the tool's own
# previous output is removed (right before its run, so that each tool, not
# only the one that runs first, may reuse the pages it frees) and dirty
# pages are written back (sync), the same for both tools. Gantry fsyncs its
# output before it renames it into place; llama_model_quantize does not,
# and that time is in gantry's figures. The first row is a plain cp of the
# model, the I/O baseline. Times are wall seconds; RSS is max RSS; faults
# are the minor page faults of the best run (each is a first touch of a
# page, which costs a host fault on a VM).
set -euo pipefail
model=$1 threads=$2 cpus=$3 n=$4
shift 4
lq=${LQ:-/tmp/bench/lq}
gantry=${GANTRY:-/tmp/gantry}
dir=${OUT:-$(dirname "$model")}
tf=$(mktemp)
trap 'rm -f "$tf" "$dir/bench-lq.gguf" "$dir/bench-g.gguf" "$dir/bench-cp.gguf"' EXIT

ftype() {
	case $1 in
	q4_0) echo 2 ;; q4_1) echo 3 ;; q8_0) echo 7 ;; q5_0) echo 8 ;; q5_1) echo 9 ;;
	q4_k_s) echo 14 ;; q4_k_m) echo 15 ;; q5_k_s) echo 16 ;; q5_k_m) echo 17 ;; q6_k) echo 18 ;;
	*) echo "unknown type $1" >&2; exit 2 ;;
	esac
}

# measure OUT CMD...: removes OUT, then prints "seconds maxrss_kB
# minor_faults" of CMD; fails if CMD fails.
measure() {
	rm -f "$1"
	shift
	cat "$model" >/dev/null
	sync # no dirty pages of an earlier run's output left to compete with this one's
	/usr/bin/time -f "%e %M %R" -o "$tf" taskset -c "$cpus" "$@" >/dev/null 2>&1
	cat "$tf"
}

best() { sort -n | head -1; }

cpt=""
for i in $(seq "$n"); do
	cpt+="$(measure "$dir/bench-cp.gguf" cp "$model" "$dir/bench-cp.gguf")"$'\n'
done
cpbest=$(printf '%s' "$cpt" | best | cut -d' ' -f1)
echo "| type | threads | llama.cpp s (best of $n) | gantry s (best of $n) | gantry's speed-up | gantry / cp | RSS llama / gantry MB | faults llama / gantry | identical |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
echo "| cp of the model (baseline) | - | | $cpbest | | 1 | | | |"
for typ in "$@"; do
	lt="" gt="" same=yes
	for i in $(seq "$n"); do
		lt+="$(measure "$dir/bench-lq.gguf" "$lq" "$model" "$dir/bench-lq.gguf" "$(ftype "$typ")" "$threads")"$'\n'
		gt+="$(measure "$dir/bench-g.gguf" "$gantry" quantize --in "$model" --out "$dir/bench-g.gguf" --type "$typ" --threads "$threads")"$'\n'
		cmp -s "$dir/bench-lq.gguf" "$dir/bench-g.gguf" || same=NO
	done
	lb=$(printf '%s' "$lt" | best) gb=$(printf '%s' "$gt" | best)
	lrss=$(printf '%s' "$lt" | awk '$2>m{m=$2}END{printf "%.0f", m/1024}')
	grss=$(printf '%s' "$gt" | awk '$2>m{m=$2}END{printf "%.0f", m/1024}')
	ls=${lb%% *} gs=${gb%% *} lf=${lb##* } gf=${gb##* }
	echo "| $typ | $threads | $ls | $gs | $(awk "BEGIN{printf \"%.2f×\", $ls/$gs}") | $(awk "BEGIN{printf \"%.2f\", $gs/$cpbest}") | $lrss / $grss | $lf / $gf | $same |"
done
