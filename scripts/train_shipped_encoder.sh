#!/usr/bin/env bash
# Trains the encoder shipped in src/cytofm/weights (MODEL_CARD.md) on the PRETRAINING parts of the shared pool.
#   python scripts/build_pretraining_pool.py ../shared/data POOL   # pretraining parts only (split files)
#   scripts/train_shipped_encoder.sh POOL RUN [BUDGET_SECONDS] [extra key=value overrides...]
# POOL holds bccd/ and chula_rbc12/ (blood-smear fields), herlev/ and cric/ (single Pap cells).
# Fields are prepared at three scales (224 px tiles, 112 px tiles, 224 px tiles at half resolution) so that
# cells reach the model from field magnification to single-cell zoom; cells are whole images.
# The number of iterations is chosen from a short timing run so that the whole script ends within the budget
# (every schedule counts iterations, so the run must know its length in advance); warm-ups are 10% of it.
set -uo pipefail
POOL=$1; RUN=$2; BUDGET=${3:-540}; shift 3 || shift $#
EXTRA=("$@")
T0=$(date +%s)
CY=${CYTOFM:-cytofm}
PY=${PYTHON:-python3}
W=${WORKERS:-$(( $(nproc) - 2 ))}; [ "$W" -lt 1 ] && W=1
mkdir -p "$RUN"
log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
log "workers=$W budget=${BUDGET}s extra=${EXTRA[*]:-}"
O=(output.qa_thumbnails=0 "output.workers=$W")
for ds in bccd chula_rbc12; do
  $CY prepare "$POOL/$ds" --preset default --out "$RUN/prep/${ds}_224" --organ blood --stain giemsa "${O[@]}" || exit 1
  $CY prepare "$POOL/$ds" --preset default --patch-size 112 --out "$RUN/prep/${ds}_112" --organ blood --stain giemsa "${O[@]}" || exit 1
  $CY prepare "$POOL/$ds" --preset default --mpp 1 --target-mpp 2 --out "$RUN/prep/${ds}_half" --organ blood --stain giemsa "${O[@]}" || exit 1
done
$CY prepare "$POOL/herlev" --preset cells --out "$RUN/prep/herlev" --organ cervix --stain pap "${O[@]}" || exit 1
$CY prepare "$POOL/cric" --preset cells --out "$RUN/prep/cric" --organ cervix --stain pap "${O[@]}" || exit 1
DATA=()
for d in bccd_224 bccd_112 bccd_half chula_rbc12_224 chula_rbc12_112 chula_rbc12_half herlev cric; do DATA+=(--data "$RUN/prep/$d"); done
# fields 0.6 (BCCD 0.2, chula 0.4; per scale 0.4/0.4/0.2), single cells 0.4 (Herlev 0.2, CRIC 0.2)
WEIGHTS="data.weights=[0.08,0.08,0.04,0.16,0.16,0.08,0.2,0.2]"
BS=${BS:-128}
COMMON=(--preset shipped "${DATA[@]}" "data.num_workers=$W" "train.batch_size=$BS" "$WEIGHTS")
PROBE=${PROBE_ITERS:-40}
log "timing run: $PROBE iterations"
$CY pretrain "${COMMON[@]}" --out "$RUN/probe" "train.iterations=$PROBE" train.save_every=100000 train.log_every=5 "${EXTRA[@]}" || exit 1
NOW=$(( $(date +%s) - T0 ))
[ -n "${PROBE_ONLY:-}" ] && { tail -3 "$RUN/probe/metrics.csv"; exit 0; }
ITERS=$($PY - "$RUN/probe/metrics.csv" "$BUDGET" "$NOW" "$BS" "${MIN_ITERS:-10}" "${STARTUP_S:-40}" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
budget, now, bs, lo, startup = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
a, b = rows[max(len(rows) // 2 - 1, 0)], rows[-1]
# images_per_s is cumulative: elapsed = iteration x batch / images_per_s; the slope skips the start-up
el = lambda r: int(r["iteration"]) * bs / float(r["images_per_s"])
its_per_s = ((int(b["iteration"]) - int(a["iteration"])) / max(el(b) - el(a), 1e-6) if b is not a
             else int(b["iteration"]) / el(b))
left = budget - now - 30 - startup  # export, and the main run's own start-up (pool decoding)
print(f"{its_per_s:.3f} it/s = {its_per_s * bs:.0f} img/s", file=sys.stderr)
print(max(lo, int(left * its_per_s)))
PY
)
WARM=$(( ITERS / 10 ))
log "main run: $ITERS iterations (warm-ups $WARM)"
$CY pretrain "${COMMON[@]}" --out "$RUN/main" "train.iterations=$ITERS" "optim.warmup_iters=$WARM" \
  "loss.warmup_teacher_temp_iters=$WARM" "train.max_minutes=$($PY -c "print(round(($BUDGET - $NOW - 30) / 60, 2))")" "${EXTRA[@]}"
log "export"
$CY export "$RUN/main" --out "$RUN/cytofm_vit_small_patch16.safetensors" --half || exit 1
log "done"
