"""LLM proposals vs seeded random sampling from the same space, at an equal training budget.

    python bench/bench_llm.py                                   # the configured LLM endpoint
    python bench/bench_llm.py --llm-config qwen2.5-0.5b-instruct  # any conf/llm name or JSON path
    python bench/bench_llm.py --offline stub                    # no LLM: a loopback stub (see below)
    python bench/bench_llm.py --offline tiny                    # no LLM: a tiny random causal LM

The LLM arm asks the `llm` generator (spec mode, strict space) for up to --models valid new models; the
random arm takes as many from the `random` generator (seeded). Both sets are trained by NNEval with the
same arguments (epochs, images, batch, seed) on the shared CIFAR-10 subset, so each model gets the same
budget. Printed: accuracy per arm, the valid-proposal rate (valid models / proposals the LLM made) and the
novelty rate (proposals that were new architectures / proposals that were well-formed architectures);
both count only proposals ruled on before the arm's model count was reached.

Offline modes are for machines without a model; they measure the pipeline, not an LLM:
  stub  a loopback OpenAI-compatible server whose "model" returns random points of the space (another seed)
        inside <think> + fenced JSON: the accuracy comparison is then random vs random.
  tiny  a 2-layer randomly initialised Llama built here: its output is junk, so expect a 0 % valid rate.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins" / "nn-gpt-fractal-llm")]

from ab.gpt.brute.fract.generation.generate import generate  # noqa: E402
from ab.gpt.brute.fract.space.generators import Request  # noqa: E402
from ab.gpt.brute.fract.sweep.loop import read_results, run_nneval  # noqa: E402
from ab.gpt.brute.fract.space.registry import build_registry  # noqa: E402
from ab.gpt.brute.fract.space.space import Space  # noqa: E402
from nn_gpt_fractal_llm import plugin  # noqa: E402
from nn_gpt_fractal_llm.backends import LLMError  # noqa: E402
from nn_gpt_fractal_llm.config import ConfigError  # noqa: E402
from nn_gpt_fractal_llm.testing import ChatServer, build_tiny_lm, read_jsonl, write_json  # noqa: E402

SUBSETS = [REPO.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py",
           Path("/work/shared/data/cifar-10-subset/cifar-10-batches-py")]


def bench_space(reg) -> Space:
    """Small models that train in seconds on a CPU: 1-3 blocks, 1-3 columns, 16-32-64 channels."""
    return Space.default(reg).with_values(depth=(1, 2, 3), columns=(1, 2, 3), channels=((16, 32, 64),))


def stub_replies(space: Space, seed: int):
    rng = random.Random(seed)

    def reply(body: dict) -> str:
        specs = [space.point(rng.randrange(space.raw_size)).to_dict() for _ in range(4)]
        for s in specs:
            s.pop("spec_version")
        return "<think>(stub: random points, not a model)</think>\n```json\n" + json.dumps(specs) + "\n```"
    return reply


def llm_config(args, work: Path, space: Space):
    """(config name or path, description, cleanup) for the chosen backend."""
    if args.offline == "stub":
        server = ChatServer(stub_replies(space, args.seed + 1000))
        cfg = server.config(work, model="offline-stub")
        return str(cfg), "OFFLINE STUB: loopback server returning random specs (no LLM)", server.close
    if args.offline == "tiny":
        model = build_tiny_lm(work / "tiny-lm")
        cfg = write_json(work / "tiny-llm.json", {
            "backend": "transformers", "model": str(model), "dtype": "float32", "device": "cpu",
            "context_length": 16384, "generation": {"max_new_tokens": 256, "do_sample": True, "temperature": 1.0}})
        return str(cfg), "OFFLINE TINY: 2-layer random Llama built here (junk output, no LLM)", lambda: None
    return args.llm_config, f"LLM config {args.llm_config}", lambda: None


def proposal_stats(out: Path) -> dict:
    recs = read_jsonl(out / "manifest.jsonl") if (out / "manifest.jsonl").exists() else []
    calls = read_jsonl(out / "llm_calls.jsonl") if (out / "llm_calls.jsonl").exists() else []
    made = sum(c["extracted"] for c in calls)
    by = {s: sum(1 for r in recs if r["status"] == s) for s in ("valid", "invalid", "duplicate")}
    decided = sum(by.values())  # proposals the pipeline ruled on (the rest came after the limit was reached)
    formed = by["valid"] + by["duplicate"]  # well-formed architectures (valid, or valid but not new)
    return {"calls": len(calls), "proposals": made, "decided": decided, **by,
            "valid_rate": by["valid"] / decided if decided else 0.0,
            "novelty_rate": by["valid"] / formed if formed else 0.0,
            "latency_s": round(sum(c["latency_s"] for c in calls), 2)}


def train(models: Path, new_lemur: Path, names: list[str], args, data: Path) -> dict:
    if not names:
        return {}
    extra = [f"--epochs={args.epochs}", f"--train-limit={args.train_images}", f"--test-limit={args.test_images}",
             f"--batch={args.batch}", f"--seed={args.seed}", f"--data-dir={data}", "--no-register", "-q"]
    rc = run_nneval(models, new_lemur, extra)
    if rc:
        print(f"warning: NNEval exited with code {rc} for {models}", file=sys.stderr)
    return read_results(new_lemur, names)


def summary(results: dict) -> dict:
    accs = [a for s, a in results.values() if s == "trained" and a is not None]
    return {"models": len(results), "trained": len(accs),
            "mean": statistics.mean(accs) if accs else None, "median": statistics.median(accs) if accs else None,
            "best": max(accs) if accs else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm-config", default="deepseek-r1-distill-qwen-7b-vllm",
                    help="conf/llm name or JSON path [the OpenAI-compatible DeepSeek endpoint]")
    ap.add_argument("--offline", choices=["stub", "tiny"], help="run without an LLM (see the module doc)")
    ap.add_argument("--models", type=int, default=6, help="models per arm (the training budget) [6]")
    ap.add_argument("--max-calls", type=int, default=6, help="LLM calls at most [6]")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=1024)
    ap.add_argument("--test-images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, help="cifar-10-batches-py folder [the shared subset]")
    ap.add_argument("--work", type=Path, help="keep models and results here [a temporary folder]")
    args = ap.parse_args()
    data = args.data_dir or next((p for p in SUBSETS if p.is_dir()), None)
    if data is None:
        sys.exit("no CIFAR-10 data: pass --data-dir (a cifar-10-batches-py folder)")

    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        reg = build_registry(third_party=False, extra={"llm": plugin})
        space = bench_space(reg)
        cfg, backend, cleanup = llm_config(args, work, space)
        print(f"backend: {backend}")
        t0 = time.perf_counter()
        try:
            llm_out = work / "llm" / "models"
            opts = {"llm": cfg, "max_calls": str(args.max_calls), "strict_space": "1",
                    "new_lemur": str(work / "llm" / "new_lemur"), "lemur_db": str(work / "none.db")}
            props = reg.generators["llm"].propose(space, Request(limit=args.models, seed=args.seed, options=opts,
                                                                 out_dir=llm_out))
            llm = generate(props, reg, llm_out, limit=args.models, generator="llm", workers=1)
        except (LLMError, ConfigError) as e:
            sys.exit(f"error: {e}\n(no model reachable? --offline stub or --offline tiny run without one)")
        finally:
            cleanup()
        t_llm = time.perf_counter() - t0
        n = len(llm.accepted)
        rnd_out = work / "random" / "models"
        rnd = generate(reg.generators["random"].propose(space, Request(limit=n, seed=args.seed)), reg, rnd_out,
                       limit=n, generator="random", workers=1) if n else None
        stats = proposal_stats(llm_out)
        arms = {"llm": summary(train(llm_out, work / "llm" / "new_lemur", llm.accepted, args, data)),
                "random": summary(train(rnd_out, work / "random" / "new_lemur", rnd.accepted if rnd else [],
                                        args, data))}

    print(f"space: {space.raw_size} raw points (depth 1-3, columns 1-3, channels 16-32-64); data {data}")
    print(f"budget per model: {args.epochs} epoch(s), {args.train_images} train / {args.test_images} test images, "
          f"batch {args.batch}, seed {args.seed}; models per arm: {n} (LLM valid models, capped at {args.models})")
    print(f"LLM proposals: {stats['proposals']} in {stats['calls']} calls ({t_llm:.1f} s with validation), "
          f"{stats['decided']} ruled on before the limit was reached: valid {stats['valid']}, "
          f"invalid {stats['invalid']}, duplicate {stats['duplicate']}")
    print(f"valid-proposal rate: {stats['valid_rate']:.1%}   novelty rate: {stats['novelty_rate']:.1%}")
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"{'arm':<8}{'models':>7}{'trained':>8}{'mean acc':>10}{'median':>9}{'best':>8}")
    for name, s in arms.items():
        print(f"{name:<8}{s.get('models', 0):>7}{s.get('trained', 0):>8}{fmt(s.get('mean')):>10}"
              f"{fmt(s.get('median')):>9}{fmt(s.get('best')):>8}")
    if args.offline:
        print(f"NOTE: offline mode '{args.offline}': no trained language model was used; these figures check the pipeline "
              "and are no evidence about LLM proposals.")
    print(json.dumps({"backend": backend, "proposals": stats, "arms": arms}, sort_keys=True))


if __name__ == "__main__":
    main()
