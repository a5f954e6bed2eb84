#!/usr/bin/env python3
"""peft_check.py — PEFT / transformers compatibility proof for H-QLoRA exports (issue 2 and issue 6).

Inputs are written by OUR export code (native/tools/make_peft_inputs), one folder per fixture model:
    <inputs>/<model>/peft/       flat PEFT adapter: merge_levels of the golden hierarchical adapter (B != 0),
                                 r = lora_alpha = R = 8 (levels 4/2/2, scales 2/1/3 folded into lora_A)
    <inputs>/<model>/merged/     fp32 HF model folder: NF4-dequantized base + that adapter (merge_into_base)
    <inputs>/<model>/base-deq/   fp32 HF model folder: the NF4-dequantized base alone
    <inputs>/<model>/ids.json    {"shape": [B, T], "ids": [...]} the token ids to run

On the GPU machine (torch, transformers, peft; no bitsandbytes needed: the NF4 dequantization is already in base-deq),
everything on the CPU in fp32, one thread, deterministic, eager attention:
    logits_peft    PeftModel.from_pretrained(AutoModelForCausalLM(base-deq), peft/) forward
    logits_merged  AutoModelForCausalLM(merged/) forward (transformers alone)
    logits_base    AutoModelForCausalLM(base-deq/) forward (to show the adapter changes the output)
    logits_peft_merged  the PeftModel after merge_and_unload() (PEFT's own merge of our flat adapter)
written to <out>/<model>.safetensors with ids (I32 [B, T]) and metadata (versions, adapter config, checks).
The script fails if PEFT did not load every lora tensor of the file exactly, or if the adapter has no effect.
native/tests/test_merge.cpp compares these logits with our hierarchical forward (max-abs <= 1e-5).

    native/build/bin/make_peft_inputs . native/build/peft_inputs        # here (our exports)
    python3 test/reference/peft_check.py --inputs native/build/peft_inputs --out $OUT/peft   # GPU machine (run tool,
                                                          # carry native/build/peft_inputs), ~30 s
    cp $OUT/peft/*.safetensors test/golden/peft/
The families (test/golden/peft/peft_check_families.log):
    native/build/bin/make_peft_inputs . native/build/peft_inputs tiny-qwen2,tiny-qwen2-tied,tiny-qwen3,tiny-mistral,tiny-gemma2,tiny-gemma3,tiny-phi3
    python3 test/reference/peft_check.py --inputs native/build/peft_inputs --out $OUT/peft \
        --models tiny-qwen2,tiny-qwen2-tied,tiny-qwen3,tiny-mistral,tiny-gemma2,tiny-gemma3,tiny-phi3
Phi-3's export names PEFT's fused modules (Phi3Attention.qkv_proj, Phi3MLP.gate_up_proj): lora_A = the q, k, v (gate,
up) A's stacked, lora_B block diagonal, r = lora_alpha = 8 with rank_pattern = alpha_pattern = {qkv_proj: 24,
gate_up_proj: 16}, so every PEFT scaling is still 1 (checked below).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch


def fail(msg: str) -> None:
    print(f"peft_check.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_model(path: str):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    model.config.use_cache = False
    model.eval()
    return model


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.float().contiguous()


def check_model(name: str, d: str) -> tuple[dict, dict]:
    from peft import PeftModel
    from safetensors.torch import load_file

    spec = json.load(open(os.path.join(d, "ids.json")))
    B, T = spec["shape"]
    ids = torch.tensor(spec["ids"], dtype=torch.long).reshape(B, T)

    base = load_model(os.path.join(d, "base-deq"))
    logits_base = logits_of(base, ids)

    peft_dir = os.path.join(d, "peft")
    cfg = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
    model = PeftModel.from_pretrained(base, peft_dir)
    model.eval()
    # Every tensor of our file must be in the model, unchanged (no silently ignored keys).
    file_sd = load_file(os.path.join(peft_dir, "adapter_model.safetensors"))
    model_sd = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    loaded = 0
    for k, v in file_sd.items():
        mk = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        if mk not in model_sd:
            fail(f"{name}: {k} from our adapter file is not a PEFT parameter ({mk})")
        if not torch.equal(model_sd[mk].float(), v.float()):
            fail(f"{name}: {k} loaded with different values")
        loaded += 1
    if loaded != len(model_sd):
        fail(f"{name}: the PEFT model has {len(model_sd)} lora tensors, our file {loaded}")
    for mod in model.modules():
        if hasattr(mod, "scaling") and isinstance(mod.scaling, dict) and "default" in mod.scaling:
            if mod.scaling["default"] != 1.0:
                fail(f"{name}: PEFT scaling {mod.scaling['default']} != 1 (r = lora_alpha expected)")
    logits_peft = logits_of(model, ids)
    effect = (logits_peft - logits_base).abs().max().item()
    if not effect > 1e-3:
        fail(f"{name}: the adapter changes the logits by only {effect}")
    merged_model = model.merge_and_unload()
    logits_peft_merged = logits_of(merged_model, ids)

    merged = load_model(os.path.join(d, "merged"))
    logits_merged = logits_of(merged, ids)

    d_pm = (logits_peft - logits_merged).abs().max().item()
    print(f"{name}: r={cfg['r']} lora_alpha={cfg['lora_alpha']} tensors={loaded} adapter effect {effect:.4g}; "
          f"max|peft - merged(ours, transformers)| {d_pm:.3g}; "
          f"max|peft - peft.merge_and_unload| {(logits_peft - logits_peft_merged).abs().max().item():.3g}", flush=True)
    tensors = {"ids": ids.to(torch.int32).contiguous(), "logits_peft": logits_peft, "logits_merged": logits_merged,
               "logits_base": logits_base, "logits_peft_merged": logits_peft_merged}
    meta = {"peft_check.model": name, "peft_check.adapter_config": json.dumps(cfg, sort_keys=True),
            "peft_check.lora_tensors": str(loaded), "peft_check.adapter_effect_max_abs": repr(effect),
            "peft_check.peft_vs_merged_max_abs": repr(d_pm)}
    return tensors, meta


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", default="native/build/peft_inputs")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "test/golden"), "peft"))
    ap.add_argument("--models", default="tiny-llama,tiny-llama3,tiny-gemma")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    import peft
    import safetensors
    import transformers
    from safetensors.torch import save_file
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__,
                "safetensors": safetensors.__version__}
    print("versions:", versions, flush=True)
    os.makedirs(a.out, exist_ok=True)
    failed: list[str] = []
    for name in a.models.split(","):
        d = os.path.join(a.inputs, name)
        if not os.path.isdir(d):
            fail(f"missing inputs {d}: run native/build*/bin/make_peft_inputs <repo> {a.inputs} first")
        try:
            tensors, meta = check_model(name, d)
        except SystemExit:
            failed.append(name)   # keep checking the other models; exit 1 at the end
            continue
        meta.update({"format": "pt", "versions": json.dumps(versions),
                     "peft_check.device": "cpu fp32, 1 thread, deterministic, eager attention"})
        save_file(tensors, os.path.join(a.out, f"{name}.safetensors"), metadata=meta)
    if failed:
        print(f"peft_check.py: FAILED for {failed}", file=sys.stderr, flush=True)
        return 1
    print("peft_check.py: OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
