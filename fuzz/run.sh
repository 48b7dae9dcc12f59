#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 10) from its seed corpus,
# FUZZ_JOBS (default 2) targets at a time, failing if any target crashes (a panic, a failed
# property assertion, a timeout or an out-of-memory). Needs the nightly toolchain and
# cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz --locked
#   usage: fuzz/run.sh [SECONDS] [TARGET...]
# FUZZ_SEED=N makes libFuzzer's choices repeatable (CI sets one, so a run that passed here
# passes there; 0, the default, picks a random seed each run).
# Each libFuzzer process uses one core: FUZZ_JOBS above the machine's free cores only shares
# them, so every target gets fewer executions in its SECONDS.
# New inputs go to fuzz/target/corpus/<target>/ (not committed; fuzz/corpus/<target>/ holds the
# seeds), crashes to fuzz/artifacts/<target>/; reproduce one with
#   cd fuzz && cargo +nightly fuzz run -s none -a <target> artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
shift || true
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
jobs_max=${FUZZ_JOBS:-2}

# Safe Rust throughout: no sanitizer (faster), but debug assertions and overflow checks on.
flags=(-s none -a)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
start=$SECONDS
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"
# Where `cargo fuzz build` put the binaries: run them directly (as `cargo fuzz run` would,
# with the same artifact directory) so that concurrent runs do not queue on Cargo's lock.
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

# Runs one target; its outcome goes to target/fuzz-<target>.result (never fails itself, so
# that the other targets still run).
fuzz_one() {
  local target=$1 max_len=4096 log="target/fuzz-$1.log" result=ok
  mkdir -p "target/corpus/$target" "corpus/$target" "artifacts/$target"
  # The authority rewrite is bounded by 16 KiB frames and header blocks: inputs must be able
  # to exceed that.
  [ "$target" = agent_authority ] && max_len=40000
  if ! "$bin/$target" "target/corpus/$target" "corpus/$target" \
    -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -seed="${FUZZ_SEED:-0}" -print_final_stats=1 >"$log" 2>&1; then
    result=CRASH
  fi
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  printf '%-16s %-5s %10s execs %8s/s\n' "$target" "$result" "${execs:-?}" "${rate:-?}" \
    >"target/fuzz-$target.result"
}

fuzz_start=$SECONDS
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  fuzz_one "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
  cat "target/fuzz-$target.result"
  if grep -q ' CRASH ' "target/fuzz-$target.result"; then
    failed+=("$target")
    tail -n 40 "target/fuzz-$target.log"
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, ${jobs_max} at a time:" \
  "fuzzing $((SECONDS - fuzz_start)) s, total $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/target/)" >&2
  exit 1
fi
