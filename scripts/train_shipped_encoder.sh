#!/usr/bin/env bash
# Trains the encoder shipped in src/cytofm/weights (MODEL_CARD.md) from the shared cytology pool.
#   scripts/train_shipped_encoder.sh POOL RUN [BUDGET_SECONDS] [extra key=value overrides...]
# POOL holds bccd/ (smear fields), herlev/ and cric/ (single-cell crops), e.g. copies of ../shared/data/*/images.
# The number of iterations is chosen from a short timing run so that the whole script ends within the budget
# (every schedule counts iterations, so the run must know its length in advance).
set -uo pipefail
POOL=$1; RUN=$2; BUDGET=${3:-540}; shift 3 || shift $#
EXTRA=("$@")
T0=$(date +%s)
CY=${CYTOFM:-cytofm}
W=${WORKERS:-$(( $(nproc) - 2 ))}; [ "$W" -lt 1 ] && W=1
mkdir -p "$RUN"
log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
log "workers=$W budget=${BUDGET}s extra=${EXTRA[*]:-}"
$CY prepare "$POOL/bccd" --preset default --out "$RUN/prep/bccd224" --organ blood --stain giemsa output.qa_thumbnails=0 output.workers=$W || exit 1
$CY prepare "$POOL/bccd" --preset smear_fields --out "$RUN/prep/bccd96" --organ blood --stain giemsa output.qa_thumbnails=0 output.workers=$W || exit 1
$CY prepare "$POOL/herlev" --preset cells --out "$RUN/prep/herlev" --organ cervix --stain pap output.qa_thumbnails=0 output.workers=$W || exit 1
$CY prepare "$POOL/cric" --preset cells --out "$RUN/prep/cric" --organ cervix --stain pap output.qa_thumbnails=0 output.workers=$W || exit 1
DATA=(--data "$RUN/prep/bccd224" --data "$RUN/prep/bccd96" --data "$RUN/prep/herlev" --data "$RUN/prep/cric")
BS=${BS:-64}
COMMON=(--preset shipped "${DATA[@]}" data.num_workers=$W train.batch_size=$BS "data.weights=[0.3,0.2,0.25,0.25]")
PROBE=${PROBE_ITERS:-60}
log "timing run: $PROBE iterations"
$CY pretrain "${COMMON[@]}" --out "$RUN/probe" train.iterations=$PROBE train.save_every=100000 "${EXTRA[@]}" || exit 1
NOW=$(( $(date +%s) - T0 ))
[ -n "${PROBE_ONLY:-}" ] && { tail -3 "$RUN/probe/metrics.csv"; exit 0; }
ITERS=$(python3 - "$RUN/probe/metrics.csv" "$BUDGET" "$NOW" "$BS" "${MIN_ITERS:-10}" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
budget, now, bs, lo = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
a, b = rows[len(rows) // 2], rows[-1]
# images_per_s is cumulative: elapsed = iteration x batch / images_per_s; the slope skips the start-up
el = lambda r: int(r["iteration"]) * bs / float(r["images_per_s"])
its_per_s = (int(b["iteration"]) - int(a["iteration"])) / max(el(b) - el(a), 1e-6)
left = budget - now - 45 - 30  # export, and the main run's own start-up
print(f"{its_per_s:.3f} it/s", file=sys.stderr)
print(max(lo, int(left * its_per_s)))
PY
)
log "main run: $ITERS iterations"
$CY pretrain "${COMMON[@]}" --out "$RUN/main" train.iterations=$ITERS train.max_minutes=$(python3 -c "print(round(($BUDGET - $NOW - 45) / 60, 2))") "${EXTRA[@]}"
log "export"
$CY export "$RUN/main" --out "$RUN/cytofm_vit_small_patch16.safetensors" --half || exit 1
log "done"
