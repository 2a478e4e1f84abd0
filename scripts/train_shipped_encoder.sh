#!/usr/bin/env bash
# Trains the encoder shipped in src/cytofm/weights (MODEL_CARD.md) on the PRETRAINING parts of the shared pool.
#   python scripts/build_pretraining_pool.py ../shared/data POOL   # pretraining parts only (split files)
#   scripts/train_shipped_encoder.sh POOL RUN [BUDGET_SECONDS] [extra key=value overrides...]
# POOL holds bccd/ and chula_rbc12/ (blood-smear fields), herlev/ and cric/ (single Pap cells); the sources
# and their weights come from scripts/prepare_shipped_pool.py (fields at three scales, Pap cells whole, and
# with CELLS=1, the default, the cells detected in the blood fields as samples of their own).
# The run's length is fixed in samples (SAMPLES, default 348,160 = 1,360 x 256: 2.6x the 133,760 of the
# run shipped before), so its schedules are known in advance and the config says what it saw;
# train.max_minutes stops it within BUDGET if the machine is slower than expected, with a checkpoint.
# Batch 256 (BS; the learning rate scales with it): 856 images/s on an H200 against 702 at 128
# (docs/benchmarks/pretraining_gpu.md), so 2.6x the samples take about 7 minutes of steps.
# A checkpoint every ~2 minutes (SAVE_EVERY iterations, default from RATE, the images/s expected),
# which scripts/gpu_shipped_encoder.sh exports as it comes. RECORD: the pool's pretraining record
# (build_pretraining_pool.py --record), attached to the export where the file exists.
set -uo pipefail
POOL=$1; RUN=$2; BUDGET=${3:-540}; shift 3 || shift $#
EXTRA=("$@")
T0=$(date +%s)
CY=${CYTOFM:-cytofm}
PY=${PYTHON:-python3}
W=${WORKERS:-$(( $(nproc) - 2 ))}; [ "$W" -lt 1 ] && W=1
mkdir -p "$RUN"
log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
log "workers=$W budget=${BUDGET}s cells=${CELLS:-1} extra=${EXTRA[*]:-}"
CELLS_ARG=(); [ "${CELLS:-1}" = 1 ] && CELLS_ARG=(--cells)
$PY scripts/prepare_shipped_pool.py "$POOL" "$RUN/prep" "${CELLS_ARG[@]}" --workers "$W" || exit 1
mapfile -t POOL_ARGS < "$RUN/prep/pretrain_args.txt"
BS=${BS:-256}
ITERS=${ITERS:-$(( ${SAMPLES:-348160} / BS ))}
WARM=$(( ITERS / 10 ))
SAVE=${SAVE_EVERY:-$(( ${RATE:-856} * 120 / BS ))}; [ "$SAVE" -lt 1 ] && SAVE=1
NOW=$(( $(date +%s) - T0 ))
MINUTES=$($PY -c "print(max(round(($BUDGET - $NOW - 30) / 60, 2), 0.1))")  # 30 s kept for the export
log "main run: $ITERS iterations x $BS (warm-ups $WARM), a checkpoint every $SAVE, at most $MINUTES min"
$CY pretrain --preset shipped "${POOL_ARGS[@]}" --out "$RUN/main" "data.num_workers=$W" "train.batch_size=$BS" \
  "train.iterations=$ITERS" "optim.warmup_iters=$WARM" "loss.warmup_teacher_temp_iters=$WARM" \
  "train.save_every=$SAVE" "train.max_minutes=$MINUTES" "${EXTRA[@]}"
log "export"
REC=(); [ -f "${RECORD:-}" ] && REC=(--pretraining-record "$RECORD")  # the pool's record, beside the weights
$CY export "$RUN/main" --out "$RUN/cytofm_vit_small_patch16.safetensors" --half "${REC[@]}" || exit 1
log "done"
