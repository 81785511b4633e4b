#!/usr/bin/env bash
# One lent GPU session, as a single script: two time-limited fine-tuning runs
# of the shipped model side by side on the GPU, then GPU inference speed.
#
# Usage (on the GPU machine, from the repository root):
#   OUT=/some/folder bash benchmarks/gpu_session.sh [TRAIN_MINUTES]
# (DEVICE=cpu POOL=2 WORKERS=1 give a quick dry run on a machine without a GPU.)
#
# Wheels of packages missing there (monai, edt, connected-components-3d) may
# be carried in .whl/; results land in $OUT:
#   perf_gpu.md   the speed table (merge into docs/performance.md)
#   gpu.log       everything printed, including the stage timings
#   A_*, B_*      each run's final weights, best-validation weights and log
set -u
OUT=${OUT:?set OUT to the results folder}
MINUTES=${1:-5}
DEVICE=${DEVICE:-cuda}
POOL=${POOL:-48}
WORKERS=${WORKERS:-7}
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
LOG=$OUT/gpu.log
exec > >(tee -a "$LOG") 2>&1
nvidia-smi -L || echo "no nvidia-smi"
python3 -c "import torch, monai, edt, cc3d; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())" || exit 1
nproc

echo "== training, $MINUTES minutes each: $(date +%T)"
common=(--init default --device "$DEVICE" --workers "$WORKERS" --threads 2 --batch-size 16
        --patch-size 96 --steps 100000 --max-minutes "$MINUTES" --pool-size "$POOL" --refresh-every 4 --val-every 400
        --preset-weights 0.15 0.35 0.5 --quiet)
ps3d train "${common[@]}" --lr 1e-3 --stress-fraction 0.35 --seed 5 \
  --output /tmp/runs/gpuA > /tmp/trainA.log 2>&1 &
pid_a=$!
ps3d train "${common[@]}" --lr 5e-4 --stress-fraction 0.5 --seed 6 \
  --output /tmp/runs/gpuB > /tmp/trainB.log 2>&1 &
pid_b=$!
wait $pid_a $pid_b  # not a bare `wait`: that would also wait for the tee above
echo "== done: $(date +%T)"
for r in A B; do
  tail -5 /tmp/train$r.log
  d=/tmp/runs/gpu$r
  tail -1 $d/log.jsonl
  grep val_f1 $d/log.jsonl | python3 -c "import sys, json; [print({k: v for k, v in json.loads(l).items() if k in ('step', 'elapsed_s', 'val_f1_50', 'val_f1_75')}) for l in sys.stdin]"
  python3 -c "import sys, json; r = [json.loads(l) for l in open(sys.argv[1])]; print(f'{len(r)} steps, {r[-1][\"elapsed_s\"] / max(1, len(r)):.3f} s a step, waiting for data {sum(x.get(\"data_s\", 0) for x in r):.1f} s in all')" $d/log.jsonl
  cp $d/log.jsonl "$OUT/${r}_log.jsonl"
  if [ -f $d/model.pt ]; then cp $d/model.pt "$OUT/${r}_model.pt"; else cp $d/last.pt "$OUT/${r}_last.pt"; fi
  [ -f $d/best.pt ] && cp $d/best.pt "$OUT/${r}_best.pt"
done
echo "== speed: $(date +%T)"
timeout 130 python3 benchmarks/segment_speed.py --device "$DEVICE" --threads 16 --warmup \
  --only otsu "model (overlap" "overlap 0.5" "batch 8" "mirroring" "size estimated" \
  --output "$OUT/perf_gpu.md" --section "## Segmentation speed on a GPU"

echo "== stages on a larger scan: $(date +%T)"
DEVICE=$DEVICE timeout 90 python3 - <<'EOF'
import os, numpy as np, torch
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.segmentation.model.inference import run_model
from ps3d_toolkit.analysis.evaluate import evaluate_instances
torch.set_num_threads(16)
scan = generate_scan((160, 256, 256), 30, seed=778, preset="medium")
kw = dict(spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, progress=False)
gpu = os.environ["DEVICE"]
for device, batch in ((gpu, 2), (gpu, 8), (gpu, 8), ("cpu", 2)):
    if device == "cpu":
        torch.set_num_threads(2)
    run = run_model(scan.image, device=device, batch_size=batch, **kw)
    f1 = evaluate_instances(scan.labels, run.labels)["f1_50"]
    print(f"stages {device} batch {batch} threads {torch.get_num_threads()}: {scan.image.size/1e6:.1f} Mvoxel "
          f"in {run.seconds:.2f} s ({scan.image.size/run.seconds/1e6:.2f} Mvoxel/s), network "
          f"{run.network_seconds:.2f} s, grid {run.network_shape}, F1@0.5 {f1:.3f}")
EOF

ls -la "$OUT"
