#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 10) from its seed corpus,
# failing if any target crashes (a panic, a failed property assertion, a timeout or an
# out-of-memory). Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz --locked
#   usage: fuzz/run.sh [SECONDS] [TARGET...]
# FUZZ_SEED=N makes libFuzzer's choices repeatable (CI sets one, so a run that passed here
# passes there; 0, the default, picks a random seed each run).
# New inputs go to fuzz/target/corpus/<target>/ (not committed; fuzz/corpus/<target>/ holds the
# seeds), crashes to fuzz/artifacts/<target>/; reproduce one with
#   cd fuzz && cargo +nightly fuzz run -s none -a <target> artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
shift || true
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

# Safe Rust throughout: no sanitizer (faster), but debug assertions and overflow checks on.
flags=(-s none -a)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
start=$SECONDS
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "target/corpus/$target" "corpus/$target"
  # The authority rewrite is bounded by 16 KiB frames and header blocks: inputs must be able
  # to exceed that.
  max_len=4096
  [ "$target" = agent_authority ] && max_len=40000
  log="target/fuzz-$target.log"
  if cargo +nightly fuzz run "${flags[@]}" "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -seed="${FUZZ_SEED:-0}" \
    -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed+=("$target")
    tail -n 40 "$log"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  summary+=("$(printf '%-16s %-5s %10s execs %8s/s' "$target" "$result" "${execs:-?}" "${rate:-?}")")
done
printf '%s\n' "${summary[@]}"
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, total $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/target/)" >&2
  exit 1
fi
