#!/usr/bin/env bash
# One call on a lent GPU machine (../.library/device): retrain the shipped encoder, then measure.
#   OUT=out TOTAL=585 scripts/gpu_shipped_encoder.sh [POOL]        # device run: timeout_s=600
# Runs from the repository root with the machine's python3 (plus wheels carried in .whl/, if any).
# The pool: POOL (default /tmp/cytofm_pool), filled first from every carried .pool/part-*/ (made by
# scripts/build_pretraining_pool.py --split-mib: the working tree that travels is limited to 64 MiB, so a
# pool that does not fit beside the repository travels in parts, one call each, while the machine stays
# warm; STAGE_ONLY=1 copies the carried part and stops; PARTS: where the parts are, default .pool).
# 1. scripts/train_shipped_encoder.sh on the pool, ending by TRAIN_S; its log gives the images/s of ViT-S/16
#    iBOT with real data and views made on the GPU. While it trains, every EXPORT_EVERY seconds (120) the
#    latest checkpoint is exported (fp16) into OUT, so a call cut short still brings weights back.
# 2. If time is left: where a ViT-S iteration goes (benchmarks/pretrain_step_breakdown.py), the ViT-B/16 paper
#    preset's model FLOP utilisation (benchmarks/ibot_throughput.py), and the same ViT-S run with the PIL views
#    (the old path) for a ratio measured on the same machine.
# RECIPE: key=value overrides on top of the shipped preset (default: KoLeo 0.1 on iBOT, which carried the
# CPU runs' margin on unseen cells: docs/dinov2_reference.md; RECIPE= trains the preset as it is).
# Results in OUT: the fp16 weights in chunks under 16 MB (weights.part-*: cat them), progress.tar.gz (the
# latest export's JSON, metrics and log: what a cut-short call leaves), small.tar.gz (logs, metrics,
# configs, benchmark lines).
set -uo pipefail
POOL=${1:-/tmp/cytofm_pool}
OUT=${OUT:-out}; TOTAL=${TOTAL:-585}; TRAIN_S=${TRAIN_S:-$(( TOTAL - 30 ))}; EVERY=${EXPORT_EVERY:-120}
read -r -a RECIPE_ARGS <<< "${RECIPE-loss.koleo_weight=0.1}"
T0=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/small" "$POOL"
for p in "${PARTS:-.pool}"/part-*; do [ -d "$p" ] && cp -r "$p"/. "$POOL"/ && echo "pool: $p copied into $POOL"; done
du -sh "$POOL" 2>/dev/null
[ -n "${STAGE_ONLY:-}" ] && exit 0
if ls "$POOL"/.parts/*-of-* >/dev/null 2>&1; then  # a pool merged from parts: every part there?
  HAVE=$(ls "$POOL"/.parts | wc -l); WANT=$(ls "$POOL"/.parts | head -1 | sed 's/.*-of-//')
  if [ "$HAVE" != "$WANT" ]; then
    echo "pool $POOL: $HAVE of $WANT parts ($(ls "$POOL"/.parts | tr '\n' ' ')); a part was not staged, or the" \
      "machine was handed back between calls (its /tmp is gone): stage every part again" >&2
    exit 3
  fi
fi
S=$OUT/small
if [ -z "${NO_WHL:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
export CYTOFM=${CYTOFM:-python3 -m cytofm} PYTHON=${PYTHON:-python3}
nvidia-smi > "$S/nvidia-smi.txt" 2>&1
$PYTHON -c "import torch, timm, torchvision, cytofm; print('torch', torch.__version__, 'timm', timm.__version__, \
'torchvision', torchvision.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
  2>&1 | tee "$S/versions.txt"
RUN=${RUN:-/tmp/run}
export RECORD=${RECORD:-$POOL/pretraining.csv.gz}  # carried in part 1 (build_pretraining_pool.py --record)
[ -f "$RECORD" ] || echo "no pretraining record at $RECORD: the exports will not name their images" >&2
REC=(); [ -f "$RECORD" ] && REC=(--pretraining-record "$RECORD")
W=$RUN/cytofm_vit_small_patch16.safetensors
ship() {  # $1: a .safetensors export -> OUT/weights.part-* (each renamed into place: never half written)
  mkdir -p /tmp/parts && rm -f /tmp/parts/*
  split -b 15000000 "$1" /tmp/parts/weights.part- || return 1
  for f in /tmp/parts/weights.part-*; do cp "$f" "$OUT/.$(basename "$f")" && mv "$OUT/.$(basename "$f")" "$OUT/$(basename "$f")"; done
  mkdir -p /tmp/progress && cp "${1%.safetensors}".json "${1%.safetensors}".pretraining.csv.gz /tmp/progress/ 2>/dev/null
  cp "$RUN/main/metrics.csv" "$S/train.log" /tmp/progress/ 2>/dev/null
  tar czf "$OUT/.progress.tar.gz" -C /tmp progress && mv "$OUT/.progress.tar.gz" "$OUT/progress.tar.gz"
}
exporter() {  # while training: the newest checkpoint exported every EVERY seconds
  local last=0
  while sleep "$EVERY"; do
    local ck=$RUN/main/checkpoint.pt
    [ -f "$ck" ] || continue
    local m; m=$(stat -c %Y "$ck")
    [ "$m" = "$last" ] && continue
    last=$m
    $CYTOFM export "$RUN/main" --out /tmp/partial.safetensors --half "${REC[@]}" > /tmp/partial.log 2>&1 \
      && ship /tmp/partial.safetensors && echo "[exporter $(( $(date +%s) - T0 ))s] $(tail -1 /tmp/partial.log)"
  done
}
exporter & EXPORTER=$!
scripts/train_shipped_encoder.sh "$POOL" "$RUN" "$TRAIN_S" "${RECIPE_ARGS[@]}" 2>&1 | tee "$S/train.log"
kill "$EXPORTER" 2>/dev/null; wait "$EXPORTER" 2>/dev/null
if [ -f "$W" ]; then
  ship "$W"
  sha256sum "$W" > "$S/weights.sha256"
  cp "${W%.safetensors}".json "${W%.safetensors}".pretraining.csv.gz "$S/" 2>/dev/null
fi
[ -d "$RUN/main" ] && mkdir -p "$S/main" && cp "$RUN/main"/*.csv "$RUN/main"/*.yaml "$RUN/main"/*.log "$S/main/" 2>/dev/null
[ -n "${SKIP_MEASURE:-}" ] && TOTAL=0  # the measurements need a GPU (SKIP_MEASURE=1: a CPU test of the script)
if [ "$(left)" -gt 110 ] && [ -d "$RUN/prep/herlev" ]; then
  timeout 60 $PYTHON benchmarks/pretrain_step_breakdown.py "$RUN/prep/herlev" "$RUN/prep/cric" "$RUN/prep/bccd_224" \
    --batch 128 --workers "$(( $(nproc) - 2 ))" 2>&1 | tee "$S/breakdown.txt"
fi
if [ "$(left)" -gt 75 ]; then
  timeout $(( $(left) - 45 )) $PYTHON benchmarks/ibot_throughput.py --device cuda --preset vit_base_paper \
    --archs vit_base_patch16_224 --batch 128 --steps 10 2>&1 | tee "$S/mfu_vit_base.txt"
fi
if [ "$(left)" -gt 60 ]; then  # the old path (PIL views in loader processes), same pool and model
  mapfile -t POOL_ARGS < "$RUN/prep/pretrain_args.txt"
  timeout $(( $(left) - 20 )) $CYTOFM pretrain --preset shipped "${POOL_ARGS[@]}" --out "$RUN/pil" data.views=pil \
    "data.num_workers=$(( $(nproc) - 2 ))" train.batch_size=128 train.iterations=60 train.log_every=5 \
    train.save_every=100000 "${RECIPE_ARGS[@]}" > "$S/pil.log" 2>&1
  cp "$RUN/pil/metrics.csv" "$S/pil_metrics.csv" 2>/dev/null
fi
echo "total $(( $(date +%s) - T0 ))s" | tee -a "$S/train.log"
tar czf "$OUT/small.tar.gz" -C "$OUT" small && rm -rf "$S"
ls -la "$OUT"
