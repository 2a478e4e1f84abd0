#!/usr/bin/env bash
# One call on a lent GPU machine (../.library/device): retrain the shipped encoder, then measure.
#   OUT=out TOTAL=560 scripts/gpu_shipped_encoder.sh POOL
# Runs from the repository root with the machine's python3 (plus wheels carried in .whl/, if any).
# 1. scripts/train_shipped_encoder.sh on POOL (built by scripts/build_pretraining_pool.py), ending by TRAIN_S;
#    its log gives the images/s of ViT-S/16 iBOT with real data and views made on the GPU.
# 2. If time is left: where a ViT-S iteration goes now that views and step never wait for the device
#    (benchmarks/pretrain_step_breakdown.py on three of the prepared sources), the ViT-B/16 paper preset's
#    model FLOP utilisation (benchmarks/ibot_throughput.py), and the same ViT-S run with the PIL views (the
#    old path) for a ratio measured on the same machine.
# RECIPE: key=value overrides on top of the shipped preset (default: KoLeo 0.1 on iBOT, which carried the
# CPU runs' margin on unseen cells: docs/dinov2_reference.md; RECIPE= trains the preset as it is).
# Results in OUT: the fp16 weights in chunks under 16 MB (weights.part-*: cat them), small.tar.gz (logs,
# metrics, configs, benchmark lines).
set -uo pipefail
POOL=${1:-.pool/full}
OUT=${OUT:-out}; TOTAL=${TOTAL:-560}; TRAIN_S=${TRAIN_S:-420}
read -r -a RECIPE_ARGS <<< "${RECIPE-loss.koleo_weight=0.1}"
T0=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/small"
S=$OUT/small
if [ -z "${NO_WHL:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
export CYTOFM="python3 -m cytofm" PYTHON=python3
nvidia-smi > "$S/nvidia-smi.txt" 2>&1
python3 -c "import torch, timm, torchvision, cytofm; print('torch', torch.__version__, 'timm', timm.__version__, \
'torchvision', torchvision.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
  2>&1 | tee "$S/versions.txt"
RUN=${RUN:-/tmp/run}
scripts/train_shipped_encoder.sh "$POOL" "$RUN" "$TRAIN_S" "${RECIPE_ARGS[@]}" 2>&1 | tee "$S/train.log"
W=$RUN/cytofm_vit_small_patch16.safetensors
if [ -f "$W" ]; then
  split -b 15000000 "$W" "$OUT/weights.part-"
  sha256sum "$W" > "$S/weights.sha256"
  cp "${W%.safetensors}.json" "$S/"
fi
for r in probe main; do
  [ -d "$RUN/$r" ] || continue
  mkdir -p "$S/$r"; cp "$RUN/$r"/*.csv "$RUN/$r"/*.yaml "$RUN/$r"/*.log "$S/$r/" 2>/dev/null
done
if [ "$(left)" -gt 110 ] && [ -d "$RUN/prep/herlev" ]; then
  timeout 60 python3 benchmarks/pretrain_step_breakdown.py "$RUN/prep/herlev" "$RUN/prep/cric" "$RUN/prep/bccd_224" \
    --batch 128 --workers "$(( $(nproc) - 2 ))" 2>&1 | tee "$S/breakdown.txt"
fi
if [ "$(left)" -gt 75 ]; then
  timeout $(( $(left) - 45 )) python3 benchmarks/ibot_throughput.py --device cuda --preset vit_base_paper \
    --archs vit_base_patch16_224 --batch 128 --steps 10 2>&1 | tee "$S/mfu_vit_base.txt"
fi
if [ "$(left)" -gt 60 ]; then  # the old path (PIL views in loader processes), same data and model
  # the same sources in the same order as train_shipped_encoder.sh, so its weights apply one to one
  D=(); for d in bccd_224 bccd_112 bccd_half chula_rbc12_224 chula_rbc12_112 chula_rbc12_half herlev cric; do D+=(--data "$RUN/prep/$d"); done
  timeout $(( $(left) - 20 )) $CYTOFM pretrain --preset shipped "${D[@]}" --out "$RUN/pil" data.views=pil \
    "data.num_workers=$(( $(nproc) - 2 ))" train.batch_size=128 train.iterations=60 train.log_every=5 \
    train.save_every=100000 "data.weights=[0.08,0.08,0.04,0.16,0.16,0.08,0.2,0.2]" "${RECIPE_ARGS[@]}" > "$S/pil.log" 2>&1
  cp "$RUN/pil/metrics.csv" "$S/pil_metrics.csv" 2>/dev/null
fi
echo "total $(( $(date +%s) - T0 ))s" | tee -a "$S/train.log"
tar czf "$OUT/small.tar.gz" -C "$OUT" small && rm -rf "$S"
ls -la "$OUT"
