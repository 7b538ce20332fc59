#!/usr/bin/env bash
# The GPU check of a rendered 1-GPU experiment: the pod's entry point (`ftops node-run
# --spec spec.json`, paths /etc/ftops, /mnt/output, /mnt/data/local and the bucket mapped
# to folders) beside a hand-written `llamafactory-cli train` of the same train.yaml, both
# throughputs printed from their all_results.json.
#
#   bash scripts/gpu_check.sh prepare     # here: .gpu/ (spec, assets) and .whl/ (wheels)
#   bash scripts/gpu_check.sh run         # on the GPU machine (carry .gpu and .whl)
#   bash scripts/gpu_check.sh --cpu-smoke # here, a few steps on the CPU
#
# The GPU machine has Python 3.12 and torch but no network and no LLaMA-Factory: the
# wheels are downloaded here for it (prepare). ORDER="hand pod" swaps the order (the
# first run on a cold GPU is slower).
set -uo pipefail
if [ "${1:-}" = "prepare" ]; then
  set -e
  repo=$PWD; ws=$(mktemp -d)
  cp -r k8s-base experiments "$ws"/ && mkdir "$ws/outputs-index"
  cat > "$ws/experiments/demo/tiny-llama/sft_lora_gpu_v1.yaml" <<'YAML'
metadata: {owner: gpu-check, description: the demo model with LoRA on one GPU in bf16}
launch: {nodes: 1, gpus_per_node: 1, gpu_type: h100-80gb, storage: ephemeral, max_restarts: 0, time_limit: 30m}
train:
  model_name_or_path: .demo/tiny-llama
  stage: sft
  do_train: true
  finetuning_type: lora
  lora_rank: 8
  lora_target: all
  dataset: demo
  template: default
  cutoff_len: 256
  per_device_train_batch_size: 16
  learning_rate: 1.0e-3
  num_train_epochs: 3.0
  logging_steps: 10
  save_steps: 100000
  bf16: true
  report_to: none
YAML
  .venv/bin/ftops --repo "$ws" render --commit "$(git rev-parse HEAD)" --out "$ws/out" \
    "$ws/experiments/demo/tiny-llama/sft_lora_gpu_v1.yaml"
  rm -rf .gpu && mkdir -p .gpu/etc
  cp "$ws"/out/demo/tiny-llama/sft_lora_gpu_v1/run/{spec.json,train.yaml,dataset_info.json} .gpu/etc/
  .venv/bin/python -c "from pathlib import Path; from render.launch.demo import make_demo_assets; make_demo_assets(Path('.gpu/assets'), n_examples=4096)"
  .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 -d .whl -c scripts/constraints.txt llamafactory==0.9.5 \
    transformers tokenizers datasets dill multiprocess omegaconf trl torchdata peft accelerate \
    fastapi starlette pydantic pydantic_core annotated-types typing-inspection fsspec pytz tzdata
  rm -rf "$ws"; echo "prepared .gpu/ and .whl/"; exit 0
fi
[ "${1:-}" = "run" ] && shift
REPO=$PWD; G=$REPO/.gpu; W=${OUT:-/tmp/gpuout-run}; mkdir -p "$W"
if [ "${1:-}" != "--cpu-smoke" ]; then
  t0=$(date +%s)
  python3 -m pip install --quiet --no-index --no-deps --target /tmp/site "$REPO"/.whl/*.whl 2>&1 | tail -3
  echo "wheels installed in $(( $(date +%s) - t0 )) s"
  mkdir -p /tmp/site/bin
  export PYTHONPATH=/tmp/site:$REPO PATH=/tmp/site/bin:$PATH
  printf '#!%s\nimport sys\nfrom render.cli import main\nsys.exit(main())\n' "$(command -v python3)" > /tmp/site/bin/ftops
  chmod +x /tmp/site/bin/ftops
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  export PATH=$REPO/.venv/bin:$PATH
fi
python3 -c "import torch, transformers, llamafactory; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'llamafactory', llamafactory.__version__)"
run=$(python3 -c "import json;print(json.load(open('$G/etc/spec.json'))['run_id'])")
P=$W/pod; rm -rf "$P"; mkdir -p "$P/etc" "$P/out" "$P/data"
cp -r "$G"/assets/data/demo.json "$P/data/"
map() { sed -e "s#/etc/ftops#$P/etc#g" -e "s#/mnt/output#$P/out#g" \
            -e "s#/mnt/data/local/.demo/data#$P/data#g" -e "s#gs://my-project-llm#file://$P/bucket#g" -e "s#model_name_or_path: .demo/tiny-llama#model_name_or_path: $G/assets/tiny-llama#" "$1"; }
for f in spec.json train.yaml dataset_info.json; do map "$G/etc/$f" > "$P/etc/$f"; done
if [ "${1:-}" = "--cpu-smoke" ]; then
  sed -i -e 's/^bf16: true/use_cpu: true/' -e 's/^num_train_epochs: 3.0/num_train_epochs: 0.05/' "$P/etc/train.yaml"
fi
# the hand-written twin: the same arguments, its own output folder
H=$W/hand; rm -rf "$H"; mkdir -p "$H"
sed -e "s#^output_dir: .*#output_dir: $H/out#" -e "s#^run_name: .*#run_name: hand#" "$P/etc/train.yaml" > "$H/train.yaml"
env_pod="NNODES=1 NODE_RANK=0 NPROC_PER_NODE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 FTOPS_RUN_ID=$run"
for order in ${ORDER:-pod hand}; do
  t0=$(date +%s.%N)
  if [ $order = pod ]; then
    env $env_pod OUTPUT_DIR="$(python3 -c "import json;print(json.load(open('$P/etc/spec.json'))['output_dir'])")" \
      ftops node-run --spec "$P/etc/spec.json" > "$W/pod.log" 2>&1; rc=$?
  else
    llamafactory-cli train "$H/train.yaml" > "$W/hand.log" 2>&1; rc=$?
  fi
  t1=$(date +%s.%N)
  echo "$order: exit $rc, wall $(python3 -c "print(round($t1-$t0,1))") s"
done
python3 - "$P" "$H" <<'PY'
import json, sys, glob, os
for name, root in (("ftops node-run", sys.argv[1]), ("llamafactory-cli train", sys.argv[2])):
    found = glob.glob(os.path.join(root, "**", "all_results.json"), recursive=True)
    if not found:
        print(f"{name}: no all_results.json"); continue
    r = json.load(open(found[0]))
    print(f"{name}: train_samples_per_second={r.get('train_samples_per_second')} "
          f"train_steps_per_second={r.get('train_steps_per_second')} "
          f"train_runtime={r.get('train_runtime')} train_loss={r.get('train_loss')}")
rec = glob.glob(os.path.join(sys.argv[1], "**", "run.json"), recursive=True)
if rec:
    d = json.load(open(rec[0]))
    print("run.json:", {k: d.get(k) for k in ("run_id", "status", "exit_code", "gpu_type", "gpus_per_node")},
          "metrics:", d.get("metrics"))
else:
    print("no run.json")
PY
tail -5 "$W/pod.log"; echo ---; tail -3 "$W/hand.log"
