#!/usr/bin/env python3
"""make_mcq_golden.py — golden letter logits for the multiple-choice scorer (native/src/mcq.cpp, issue 8).

Runs where torch + transformers + tokenizers + safetensors are installed (the GPU machine); CPU fp32, one thread,
deterministic, eager attention, TF32 off — the settings of make_golden.py.

    python3 test/reference/make_mcq_golden.py [--out $OUT/mcq-tiny-llama.json]

Model: test/fixtures/models/tiny-llama with every targeted projection weight replaced by its NF4-dequantized value
taken from test/golden/tiny-llama.safetensors (nf4.code[code] * nf4.<M>.scales[block], exactly what make_golden.py
used), plus the golden adapter init of that file (<M>.levels.{j}.lora_{A,B}.weight, levels from hqlora.levels):
    y = x·Wᵀ + Σ_{j < n} s_j · B_j(A_j(x))     (PEFT's lora.Linear order: lora_B(lora_A(x)) * scaling)
for n = 0 (the NF4 base alone), 1, ..., L (every level) — the level ablation of `hqlora-train eval`.

Prompts: the MMLU prompt of Hendrycks et al. (test/hendrycks_test evaluate.py format_example / gen_prompt):
    "The following are multiple choice questions (with answers) about" + " " + subject.replace("_", " ") + ".\n\n"
    + k shots "Q\nA. a\nB. b\nC. c\nD. d\nAnswer: X\n\n" + the question the same way ending "\nAnswer:"
tokenized with tokenizer.json without special tokens and prefixed with BOS (qlora.py: f"{bos}{input}").
Scoring as qlora.py's MMLUEvalCallback: logits at the last prompt position, columns
letter_ids = [tokenizer("A", add_special_tokens=False)[0], ... "D"]; prediction = argmax over those four.

Output JSON: {"model", "levels", "letters", "letter_ids", "prompts": [{"subject", "text", "ids", "answer"}],
"letter_logits": {"0": [[4 floats] per prompt], "1": ..., "L": ...}, "versions"}. Floats are written with
Python's repr of the float32 value (exact). The native test native/tests/test_mcq.cpp scores the same ids in one
right-padded batch and requires max |ours - ref| <= 1e-4; test/unit/eval.test.ts requires the TS prompt builder
and tokenizer to reproduce "text" and "ids" exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LETTERS = ["A", "B", "C", "D"]

# (subject, question, choices, answer index); the first row of each subject also serves as its 1-shot example.
QUESTIONS = [
    ("next_letter", "Which letter follows 'c'?", ["d", "q", "b", "x"], 0),
    ("next_letter", "Which letter follows 'y'?", ["a", "x", "z", "m"], 2),
    ("previous_letter", "Which letter precedes \"k\"?", ["l", "j", "k", "e"], 1),
    ("previous_letter", "Which letter precedes 'a', the first?", ["b", "a", "y", "z"], 3),
    ("word_shift", "Shift each letter of 'cab' by one, z wraps to a.", ["dbc", "dbb", "ebc", "cab"], 0),
]


def format_subject(subject: str) -> str:
    return "".join(" " + part for part in subject.split("_"))


def format_example(q: str, choices: list[str], answer: int | None) -> str:
    s = q
    for letter, c in zip(LETTERS, choices):
        s += f"\n{letter}. {c}"
    s += "\nAnswer:"
    if answer is not None:
        s += f" {LETTERS[answer]}\n\n"
    return s


def header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about{format_subject(subject)}.\n\n"


def build_prompts() -> list[dict]:
    out = []
    shots: dict[str, tuple] = {}
    for subject, q, choices, ans in QUESTIONS:
        if subject not in shots:
            shots[subject] = (q, choices, ans)
            text = header(subject) + format_example(q, choices, None)  # 0-shot
        else:
            sq, sc, sa = shots[subject]
            text = header(subject) + format_example(sq, sc, sa) + format_example(q, choices, None)  # 1-shot
        out.append({"subject": subject, "text": text, "answer": ans})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=os.path.join(REPO, "test", "fixtures", "models"))
    ap.add_argument("--golden", default=os.path.join(REPO, "test", "golden", "tiny-llama.safetensors"))
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "mcq-tiny-llama.json") if os.environ.get("OUT")
                    else os.path.join(REPO, "test", "golden", "mcq-tiny-llama.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)

    import safetensors
    import tokenizers
    import transformers
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    path = os.path.join(args.fixtures, "tiny-llama")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    model.config.use_cache = False
    model.eval()

    g = safe_open(args.golden, "pt")
    meta = g.metadata()
    levels = json.loads(meta["hqlora.levels"])
    code = g.get_tensor("nf4.code").float()
    modules = [f"model.layers.{L}.{'self_attn' if t in TARGETS[:4] else 'mlp'}.{t}"
               for L in range(model.config.num_hidden_layers) for t in TARGETS]
    adapters: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
    with torch.no_grad():
        for m in modules:
            lin = model.get_submodule(m)
            packed = g.get_tensor(f"nf4.{m}.packed").to(torch.int64).reshape(-1)
            scales = g.get_tensor(f"nf4.{m}.scales").float()
            q = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)
            deq = code[q] * scales.repeat_interleave(64)[: q.numel()]
            lin.weight.copy_(deq.reshape(lin.weight.shape))
            adapters[m] = [(g.get_tensor(f"{m}.levels.{j}.lora_A.weight").float(),
                            g.get_tensor(f"{m}.levels.{j}.lora_B.weight").float(),
                            float(lv["alpha"]) / float(lv["rank"])) for j, lv in enumerate(levels)]

    active = {"n": 0}

    def make_hook(m: str):
        def hook(mod, inputs, output):
            x = inputs[0]
            for j, (A, B, s) in enumerate(adapters[m]):
                if j >= active["n"]:
                    break
                output = output + torch.nn.functional.linear(torch.nn.functional.linear(x, A), B) * s
            return output
        return hook

    for m in modules:
        model.get_submodule(m).register_forward_hook(make_hook(m))

    tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    bos = model.config.bos_token_id
    letter_ids = [tok.encode(L, add_special_tokens=False).ids[0] for L in LETTERS]
    prompts = build_prompts()
    for p in prompts:
        p["ids"] = [bos] + tok.encode(p["text"], add_special_tokens=False).ids
        if len(p["ids"]) > model.config.max_position_embeddings:
            raise SystemExit(f"prompt of {len(p['ids'])} tokens exceeds max_position_embeddings")

    result: dict[str, list] = {}
    with torch.no_grad():
        for n in range(len(levels) + 1):
            active["n"] = n
            rows = []
            for p in prompts:  # one prompt per forward: no padding in the reference
                ids = torch.tensor([p["ids"]], dtype=torch.int64)
                logits = model(input_ids=ids).logits[0, -1]
                rows.append([float(logits[i].float()) for i in letter_ids])
            result[str(n)] = rows
            preds = [max(range(4), key=lambda k: r[k]) for r in rows]
            print(f"levels {n}: predictions {preds}, letter logits row 0 {rows[0]}", flush=True)

    out = {
        "model": "tiny-llama",
        "golden_adapter": "test/golden/tiny-llama.safetensors (initial adapter weights)",
        "levels": levels,
        "letters": LETTERS,
        "letter_ids": letter_ids,
        "bos_id": bos,
        "prompts": prompts,
        "letter_logits": result,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "safetensors": safetensors.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
