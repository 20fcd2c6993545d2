"""GPU smoke test: a tiny random-weight Llama, built locally, served by a real vLLM through Switchyard.

For a machine with an NVIDIA GPU and ``pip install -e '.[gpu]'`` (vllm, which brings torch, transformers and
tokenizers). Nothing comes from a model hub: the model (2 layers, hidden size 256, random weights) and its
tokenizer (a byte-level BPE trained here on a few sentences, saved with a Llama-3-style chat template) are
written to a temporary directory.

    python bench/gpu_smoke.py --direct
        InProcessVLLMBackend driven through BackendRunner: 100 requests from 16 threads, plus the
        context-length and cancellation paths. Checks the adapter even if the worker wiring changes.
    python bench/gpu_smoke.py
        A real `switchyard worker llama-3-70b --engine vllm --model-path DIR` process fed 100 jobs through
        Celery (SWITCHYARD_CONFIG points it at the tiny model; broker and database as the CLI finds them).

Random weights produce random tokens, so only the plumbing is checked (counts, finish reasons, timings,
errors), never the text; --direct asks for ``ignore_eos`` so that every request yields exactly --max-tokens.
Exit status: 0 all checks passed, 1 a check failed, 2 vllm, torch or a GPU is missing (with a message).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

MODEL = "llama-3-70b"  # the queue/catalog entry the tiny model stands in for
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Switchyard routes inference jobs to self-hosted models and commercial APIs.",
    "Summarise the following record and extract the customer's order number.",
    "Continuous batching keeps the GPU busy while requests arrive one by one.",
    "What is the capital of France? Paris is the capital of France.",
    "Write a short poem about trains, tracks, signals and the night shift.",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def check_environment() -> str | None:
    """Why this machine cannot run the smoke test, or None."""
    # NVML answers is_available() without initialising CUDA in this process (which would break forks).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    for module, why in (
        ("torch", "torch"),
        ("vllm", "vllm"),
        ("transformers", "transformers"),
        ("tokenizers", "tokenizers"),
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{why} is not installed: run `pip install -e '.[gpu]'` on a GPU host"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (torch.cuda.is_available() is False)"
    return None


def build_tiny_model(out: Path) -> Path:
    """Write a tiny random Llama and its tokenizer to ``out`` (a directory vLLM can load)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(SENTENCES * 50, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,  # head_dim 64
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float16)  # stays on the CPU: no CUDA in this process
    model.save_pretrained(out)  # safetensors
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(q / 100 * len(ordered))) - 1)] if ordered else float("nan")


def run_direct(model_dir: Path, args: argparse.Namespace) -> bool:
    """The adapter itself: BackendRunner + InProcessVLLMBackend, as a worker process holds them."""
    from switchyard.errors import ContextLengthExceeded, EngineDeadError
    from workers.engines.base import GenerationRequest
    from workers.engines.runner import BackendRunner
    from workers.engines.vllm_local import InProcessVLLMBackend, VLLMEngineConfig

    config = VLLMEngineConfig(
        served_model=MODEL,
        model_path=str(model_dir),
        tensor_parallel_size=1,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=2048,
        max_num_seqs=64,
        dtype="float16",
        extra={"enforce_eager": not args.cuda_graphs},
    )
    runner = BackendRunner(InProcessVLLMBackend(config), name="gpu-smoke")
    load_s = runner.start(timeout=900)
    print(f"engine ready in {load_s:.1f} s")
    ok = True
    try:

        def request(i: int, max_tokens: int) -> GenerationRequest:
            messages = [{"role": "user", "content": f"{SENTENCES[i % len(SENTENCES)]} (job {i})"}]
            return GenerationRequest(
                f"smoke-{i}", messages, max_tokens=max_tokens, temperature=0.8, extra={"ignore_eos": True, "seed": i}
            )

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:  # like Celery's task threads
            results = list(
                pool.map(lambda i: runner.generate(request(i, args.max_tokens), timeout=300), range(args.requests))
            )
        wall = time.perf_counter() - t0
        tokens = sum(r.completion_tokens for r in results)
        latencies = [r.inference_s for r in results]
        print(
            f"{len(results)} requests, {tokens} completion tokens in {wall:.2f} s: "
            f"{tokens / wall:,.0f} tok/s, P50 {_percentile(latencies, 50) * 1000:.0f} ms, "
            f"P95 {_percentile(latencies, 95) * 1000:.0f} ms"
        )
        checks = {
            "every request got exactly max_tokens tokens": all(r.completion_tokens == args.max_tokens for r in results),
            "finish_reason is 'length' (ignore_eos)": all(r.finish_reason == "length" for r in results),
            "prompt tokens counted by the engine": all(r.prompt_tokens > 10 for r in results),
            "not simulated, model name reported": all(not r.simulated and r.model == MODEL for r in results),
            "0 <= TTFT <= latency": all(
                r.time_to_first_token_s is not None and 0 <= r.time_to_first_token_s <= r.inference_s for r in results
            ),
        }
        try:
            runner.generate(request(10_000, 4000), timeout=60)
            checks["prompt + max_tokens > max_model_len is refused"] = False
        except ContextLengthExceeded:
            checks["prompt + max_tokens > max_model_len is refused"] = True
        long_job = runner.submit(request(10_001, 1900))
        time.sleep(0.5)
        long_job.cancel()  # aborts the request inside vLLM
        deadline = time.monotonic() + 30
        while runner.in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        checks["a cancelled request leaves the engine"] = runner.in_flight == 0
        after = runner.generate(request(1, 8), timeout=60)
        checks["engine still serves after all that"] = runner.healthy and after.completion_tokens == 8
        for name, passed in checks.items():
            print(f"  [{'ok' if passed else 'FAILED'}] {name}")
            ok = ok and passed
    except EngineDeadError as exc:
        print(f"  [FAILED] engine died: {exc}")
        ok = False
    finally:
        runner.stop(timeout=120)
    return ok


def run_worker(model_dir: Path, args: argparse.Namespace, workdir: Path) -> bool:
    """The whole path: a real worker process for MODEL on the tiny model, fed through Celery."""
    cli = shutil.which("switchyard")
    if cli is None:
        print("the `switchyard` command is not on PATH: pip install -e '.[gpu]' first", file=sys.stderr)
        return False
    config_path = workdir / "switchyard.toml"
    config_path.write_text(
        f'[models."{MODEL}"]\ncontext_window = 2048\nmax_output_tokens = 512\n\n'
        f'[models."{MODEL}".engine]\nmodel_path = {json.dumps(str(model_dir))}\ntensor_parallel_size = 1\n'
        f"gpu_memory_utilization = {args.gpu_memory_utilization}\nmax_model_len = 2048\n"
        'max_num_seqs = 64\ndtype = "float16"\n'
    )
    os.environ["SWITCHYARD_CONFIG"] = str(config_path)
    from switchyard.services import ensure_services
    from switchyard.settings import Settings

    urls = ensure_services(Settings.from_env())  # the same broker and database for worker and client
    os.environ["SWITCHYARD_BROKER_URL"] = urls.broker_url
    os.environ["SWITCHYARD_DATABASE_URL"] = urls.database_url
    subprocess.run([cli, "db", "upgrade"], check=True)
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [cli, "worker", MODEL, "--engine", "vllm", "--model-path", str(model_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        from producer import Client

        client = Client()
        jobs = [
            {
                "custom_id": f"smoke-{i}",
                "model": MODEL,
                "max_tokens": args.max_tokens,
                "prompt": f"{SENTENCES[i % len(SENTENCES)]} (job {i})",
            }
            for i in range(args.requests)
        ]
        t0 = time.perf_counter()
        batch = client.submit_many(jobs)
        client.wait(batch, timeout=900)  # includes the engine's load time
        wall = time.perf_counter() - t0
        results = list(client.results(batch))
        ok = _report_worker_results(results, wall, worker.poll())
    except Exception as exc:  # report, with the worker's own account, rather than a bare traceback
        print(f"  [FAILED] {type(exc).__name__}: {exc}")
        ok = False
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(120)
            except subprocess.TimeoutExpired:
                worker.kill()
    if not ok:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("last lines of the worker's log:\n  " + "\n  ".join(tail))
    return ok


def _report_worker_results(results: list[Any], wall: float, worker_status: int | None) -> bool:
    rows = [r.model_dump() if hasattr(r, "model_dump") else dict(r) for r in results]
    done = [r for r in rows if r.get("error") is None and r.get("response")]
    tokens = sum((r["response"].get("body", {}).get("usage") or {}).get("completion_tokens", 0) for r in done)
    print(
        f"{len(done)}/{len(rows)} jobs succeeded, {tokens} completion tokens in {wall:.1f} s "
        f"(including engine start-up): {tokens / wall:,.0f} tok/s"
    )
    checks = {
        "every job succeeded": len(done) == len(rows) > 0,
        "served by the real engine": all((r.get("switchyard") or {}).get("simulated") is False for r in done),
        "worker still running": worker_status is None,
    }
    for name, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAILED'}] {name}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--direct", action="store_true", help="drive the adapter directly, without Celery")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16, help="task threads (--direct)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--cuda-graphs", action="store_true", help="capture CUDA graphs (slower start-up)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary model directory")
    args = parser.parse_args(argv)

    problem = check_environment()
    if problem:
        print(f"gpu_smoke: cannot run here: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-gpu-smoke-"))
    try:
        t0 = time.perf_counter()
        model_dir = build_tiny_model(workdir / "tiny-llama")
        print(f"tiny model written to {model_dir} in {time.perf_counter() - t0:.1f} s")
        ok = run_direct(model_dir, args) if args.direct else run_worker(model_dir, args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("gpu_smoke: PASSED" if ok else "gpu_smoke: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":  # required: vLLM spawns processes that re-import __main__
    sys.exit(main())
