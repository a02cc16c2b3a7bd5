"""Check and time the transformers generator (:class:`engine.generators.transformers.Generator`) on a CUDA GPU, once.

    # here, once (needs the GGUF files; writes tokenizers and configs only, no weights):
    python bench/bench_generator_gpu.py --prepare .gpu
    # on the GPU machine (offline; .gpu travels with the repo):
    PYTHONUNBUFFERED=1 python3 bench/bench_generator_gpu.py --models-dir .gpu --device cuda --out $OUT/gpu.md
    # a short end-to-end check on a CPU:
    python bench/bench_generator_gpu.py --models-dir .gpu --device cpu --models smollm2-135m --rounds 1 --n 4

Why: the generator's CUDA path (``device="cuda"``, ``dtype="auto"`` = bfloat16 there, the prefix cache, the
stopping rule and the RNG forking on a GPU) has never run; every measurement so far was on a 2-core CPU. A GPU
machine is lent rarely, for minutes, with no network, and at most 64 MiB travel with the repo. The smallest model
file (SmolLM2-135M GGUF) is 98 MB, so no weights can travel: ``--prepare`` extracts each catalog model's tokenizer
and config from its GGUF (a few MB each), and the run builds models of exactly those shapes with RANDOM weights
(seeded), saves each as a Hugging Face folder and loads it through ``Generator(model=folder)``, the product's way.

What is measured: (a) correctness: the generator loads on the device in bfloat16 (``auto``) and float32 and
writes instructions for 8 soft prompts (``--n-check``) batched and one at a time, each a ``str``; how many batched
texts equal the one-at-a-time ones; for the smallest model how many CUDA float32 texts equal CPU float32's
(reported, not asserted: random weights give near-flat logits, so greedy ties may break differently across
devices). (b) speed: instructions/s and generated tokens/s, batched (batch sizes 8 and 25 over 25 soft prompts)
against one at a time (10 soft prompts), on the device in ``auto`` dtype; median of ``--rounds`` rounds after a
warm-up round, the settings taking turns. Generated tokens are counted (the non-pad tokens ``generate`` returns)
because random weights seldom hit the stop rule, so every row tends to run to ``max_new_tokens`` (32, the
product's default); with real weights rows stop earlier and instructions/s is higher, tokens/s comparable.

What is NOT measured: instruction quality (random weights write noise, which cleans mostly to the placeholder),
real weights' stopping behaviour, GGUF de-quantisation at load time (the product loads GGUF files; here the
folders hold safetensors), and the llama.cpp backend.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# transformers >= 5.2x warns on every generate() call that `past_key_values` will be renamed; once is enough (the
# engine's own catch_warnings() resets the once-registry, so filter it outright to keep the output readable).
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated.*")

import torch  # noqa: E402

#: Catalog models in size order (the first one found is "the smallest").
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
#: Tokenizer files that ``tokenizer.json`` makes redundant (dropped by --prepare; loading is checked after).
REDUNDANT = ("vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")
D, N_TOKENS, PROJ_SEED = 10, 5, 0  # as bench/bench_generator.py and bench/engine_speed.py (c)


@dataclass(frozen=True)
class Demo:
    """What :class:`engine.prompts.Demo` asks for: an input and its answers."""

    input: str
    answers: tuple[str, ...]


DEMOS = [Demo(i, (o,)) for i, o in (
    ("interior", "exterior"), ("real", "fake"), ("quick", "slow"), ("happy", "sad"), ("open", "closed"),
)]


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


# --------------------------------------------------------------------------------------------------------------
# --prepare (here, once)


def prepare(out_dir: Path, names: Sequence[str]) -> int:
    """Save each catalog model's tokenizer and config (read from its GGUF file) to ``out_dir/<name>/``."""
    from transformers import AutoConfig, AutoTokenizer

    from engine.models import catalog

    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        gguf = catalog.local_path(catalog.get(name))
        if gguf is None:
            say(f"{name}: not pulled here, skipped")
            continue
        t0 = time.perf_counter()
        cfg = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        target = out_dir / name
        shutil.rmtree(target, ignore_errors=True)
        tok.save_pretrained(target)
        cfg.save_pretrained(target)
        if (target / "tokenizer.json").is_file():
            for f in REDUNDANT:
                (target / f).unlink(missing_ok=True)
        (target / "source.json").write_text(json.dumps({"gguf": gguf.name, "bytes": gguf.stat().st_size}) + "\n")
        # The saved tokenizer must be the GGUF's: same ids, same specials, same chat prompt.
        back = AutoTokenizer.from_pretrained(str(target))
        text = "Input: cat, elephant\nOutput: elephant\n\nThe instruction was to write ünïcode 123."
        msgs = [{"role": "user", "content": text}]
        checks = {
            "ids": back(text)["input_ids"] == tok(text)["input_ids"],
            "len": len(back) == len(tok),
            "specials": (back.eos_token_id, back.pad_token_id, back.bos_token_id)
            == (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id),
            "chat": bool(tok.chat_template)
            and back.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
        }
        bad = [k for k, ok in checks.items() if not ok]
        failed += bool(bad)
        say(f"{name}: {type(tok).__name__}, vocab {len(tok)}, {sorted(p.name for p in target.iterdir())}, "
            f"{mib(target):.1f} MiB, {time.perf_counter() - t0:.0f} s, "
            + (f"MISMATCH {bad}" if bad else "reloads identically"))
    total = mib(out_dir)
    say(f"total {out_dir}: {total:.1f} MiB" + ("  (over 40 MiB!)" if total > 40 else ""))
    return 1 if failed or total > 40 else 0


# --------------------------------------------------------------------------------------------------------------
# The run (on the GPU machine)


@dataclass
class Report:
    """What gets printed and written to ``--out``; written again after each model so a cut-off run keeps its part."""

    out: Path | None
    header: list[str]
    rows: list[tuple[str, ...]]
    notes: list[str]

    def note(self, line: str) -> None:
        self.notes.append(line)
        say("  " + line)
        self.write()

    def markdown(self) -> str:
        cols = ("model", "params", "device", "dtype", "setting", "instr/s", "tokens/s", "ratio")
        lines = [*self.header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        lines += ["", "Correctness and notes:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(self.markdown())


class TokenCounter:
    """Wraps a model's ``generate`` to count the tokens it returns (non-pad: finished rows are padded)."""

    def __init__(self, model: Any, pad_id: int | None) -> None:
        self.model, self.pad_id, self.tokens = model, pad_id, 0
        self._orig: Callable[..., Any] = model.generate
        model.generate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._orig(*args, **kwargs)
        self.tokens += int(out.numel() if self.pad_id is None else (out != self.pad_id).sum())
        return out

    def detach(self) -> None:
        self.model.generate = self._orig


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def param_count(cfg: Any) -> int:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def build(src: Path, dst: Path, device: str, seed: int) -> None:
    """A random-weight bfloat16 model of ``src``'s config, saved with ``src``'s tokenizer as an HF folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(str(src))
    torch.manual_seed(seed)
    try:
        with torch.device(device if device.startswith("cuda") else "cpu"):  # initialising on the GPU is faster
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    except Exception as exc:  # not worth losing the run over: initialise on the CPU instead
        say(f"  initialising on {device} failed ({type(exc).__name__}: {exc}); initialising on the CPU")
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(dst)
    del model


def texts_ok(texts: Any, n: int) -> bool:
    return isinstance(texts, list) and len(texts) == n and all(isinstance(t, str) and t for t in texts)


def check(folder: Path, device: str, dtype: str, Z: torch.Tensor) -> tuple[Any, list[str], str]:
    """Load a Generator and decode ``Z`` batched and one at a time. (generator, batched texts, summary line)."""
    from engine.generators.transformers import Generator
    from engine.prompts import PLACEHOLDER_INSTRUCTION

    t0 = time.perf_counter()
    gen = Generator(model=str(folder), device=device, max_new_tokens=32, batch_size=8, dtype=dtype)
    load_s = time.perf_counter() - t0
    p = next(gen.model.parameters())
    A = gen.projection(D, N_TOKENS, seed=PROJ_SEED)
    t0 = time.perf_counter()
    batched = gen.instructions(Z, DEMOS, A, N_TOKENS)
    single = [gen.instructions(z[None], DEMOS, A, N_TOKENS)[0] for z in Z]
    sync(device)
    dec_s = time.perf_counter() - t0
    n = Z.shape[0]
    ok = texts_ok(batched, n) and texts_ok(single, n)
    same = sum(a == b for a, b in zip(batched, single, strict=False))
    line = (f"{folder.name} {device} {dtype}: {'ok' if ok else 'FAIL'}: loaded in {load_s:.1f} s as {p.dtype} on "
            f"{p.device}, embed std {gen.embed_std:.4f}; {n} soft prompts batched + one at a time in {dec_s:.1f} s; "
            f"all str: {ok}; batched == one-at-a-time: {same}/{n}; distinct {len(set(batched))}, "
            f"placeholder {batched.count(PLACEHOLDER_INSTRUCTION)}; first {(batched or [''])[0][:60]!r}")
    return gen, batched, line


def speed(gen: Any, device: str, Z: torch.Tensor, n_single: int, batch_sizes: Sequence[int], rounds: int,
          deadline: float) -> tuple[dict[str, tuple[float, float]], int]:
    """{setting: (median instr/s, median tokens/s)} and the rounds done after a warm-up round.

    Batched settings decode all of ``Z``, one at a time its first ``n_single`` rows (random weights run every row
    to ``max_new_tokens``, so a few rows time it as well as many). The warm-up round runs each setting once on
    one batch (or one row): the prompt cache, the kernels and the allocator are then warm.
    """
    A = gen.projection(D, N_TOKENS, seed=PROJ_SEED)
    counter = TokenCounter(gen.model, gen.tokenizer.pad_token_id)
    settings: list[tuple[str, int]] = [(f"batch {b}", b) for b in batch_sizes] + [("one at a time", 0)]
    rates: dict[str, list[tuple[float, float]]] = {s: [] for s, _ in settings}
    done = 0
    try:
        for r in range(rounds + 1):  # round 0 warms up
            t_round = time.perf_counter()
            order = settings[r % len(settings):] + settings[: r % len(settings)]  # take turns
            for label, bs in order:
                counter.tokens = 0
                full = Z if bs else Z[:n_single]
                rows = Z[: bs or 1] if r == 0 else full
                n = rows.shape[0]
                sync(device)
                t0 = time.perf_counter()
                if bs:
                    gen.batch_size = bs
                    out = gen.instructions(rows, DEMOS, A, N_TOKENS)
                else:
                    out = [gen.instructions(z[None], DEMOS, A, N_TOKENS)[0] for z in rows]
                sync(device)
                dt = time.perf_counter() - t0
                assert texts_ok(out, n), f"{label}: bad output {out!r:.200}"
                if r:
                    rates[label].append((n / dt, counter.tokens / dt))
            done = r
            if r < rounds and time.perf_counter() + (time.perf_counter() - t_round) > deadline:
                say(f"  time budget: stopping after {done} timed round(s)")
                break
    finally:
        counter.detach()
        gen.batch_size = 8
    med = {s: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for s, v in rates.items() if v}
    return med, done


def bench_model(src: Path, tmp: Path, args: argparse.Namespace, report: Report, smallest: bool,
                deadline: float) -> None:
    from transformers import AutoConfig

    name, device = src.name, args.device
    params = param_count(AutoConfig.from_pretrained(str(src)))
    say(f"\n## {name} ({params / 1e6:.0f}M parameters)")
    folder = tmp / name
    t0 = time.perf_counter()
    build(src, folder, device, args.seed)
    say(f"  random bfloat16 weights built and saved in {time.perf_counter() - t0:.1f} s ({mib(folder):.0f} MiB)")
    free(device)
    Z8 = torch.rand(args.n_check, D, generator=torch.Generator().manual_seed(1)) * 2 - 1
    Zn = torch.rand(args.n, D, generator=torch.Generator().manual_seed(2)) * 2 - 1
    f32: list[str] | None = None
    for dtype in ("auto", "float32"):
        if time.perf_counter() > deadline:
            report.note(f"{name} {device} {dtype}: skipped (time budget)")
            continue
        gen: Any = None
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            gen, texts, line = check(folder, device, dtype, Z8)
            report.note(line)
            if dtype == "float32":
                f32 = texts
            if dtype == "auto":
                med, done = speed(gen, device, Zn, min(args.n_single, args.n), args.batch_sizes, args.rounds,
                                  deadline)
                one = med.get("one at a time")
                real = str(next(gen.model.parameters()).dtype).removeprefix("torch.")
                for label, (ips, tps) in med.items():
                    ratio = f"{ips / one[0]:.2f}" if one else "-"
                    report.rows.append((name, f"{params / 1e6:.0f}M", device, f"auto ({real})", label,
                                        f"{ips:.2f}", f"{tps:.0f}", ratio))
                    say(f"  speed {label}: {ips:.2f} instr/s, {tps:.0f} tokens/s, x{ratio} one at a time")
                peak = (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                        if device.startswith("cuda") else "")
                report.note(f"{name} speed: {args.n} soft prompts per batched setting, "
                            f"{min(args.n_single, args.n)} one at a time; median of {done} round(s) after a "
                            f"warm-up round{peak}")
        except Exception as exc:  # report and go on: the run happens once
            traceback.print_exc()
            report.note(f"{name} {device} {dtype}: ERROR {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            del gen
            free(device)
    if smallest and device != "cpu" and f32 is not None:
        if time.perf_counter() > deadline:
            report.note(f"{name} cpu float32: skipped (time budget)")
        else:
            try:
                _, cpu, line = check(folder, "cpu", "float32", Z8)
                report.note(line)
                same = sum(a == b for a, b in zip(cpu, f32, strict=False))
                report.note(f"{name}: cpu float32 == {device} float32 (greedy, batched): {same}/{len(cpu)}")
            except Exception as exc:
                traceback.print_exc()
                report.note(f"{name} cpu float32: ERROR {type(exc).__name__}: {str(exc)[:300]}")
            free(device)
    shutil.rmtree(folder, ignore_errors=True)


def stop_rule(device: str, report: Report, vocab_sizes: Sequence[int]) -> None:
    """The stopping rule's cost a decoding step on the device: the masks it uses now against what it did before
    (``torch.isin`` against id lists that lived on the CPU and were copied to the device every step)."""
    from engine.generators.transformers import _StopAtLineOrSentence

    for vocab in vocab_sizes:
        g = torch.Generator().manual_seed(0)
        stop = set(torch.randint(0, vocab, (300,), generator=g).tolist())
        content = set(range(vocab)) - stop - set(range(0, vocab, 9))
        stop_cpu, content_cpu = torch.tensor(sorted(stop)), torch.tensor(sorted(content))

        def before(ids: torch.Tensor, stop_ids: torch.Tensor = stop_cpu,
                   content_ids: torch.Tensor = content_cpu) -> torch.Tensor:
            last = ids[:, -1]
            return torch.isin(last, stop_ids.to(last.device)) & torch.isin(ids, content_ids.to(last.device)).any(1)

        rule = _StopAtLineOrSentence(stop, content, vocab).to(device)

        def masks(ids: torch.Tensor, rule: _StopAtLineOrSentence = rule) -> torch.Tensor:
            return rule(ids, ids)

        ids = torch.randint(0, vocab, (25, 32), generator=g).to(device)
        assert torch.equal(before(ids).cpu(), masks(ids).cpu())
        ms = {}
        for name, f in (("before", before), ("masks", masks)) * 2:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(100):
                f(ids)
            sync(device)
            ms[name] = (time.perf_counter() - t0) * 10
        report.note(f"stopping rule a step, vocab {vocab}, 25 rows x 32 tokens on {device}: isin + copy "
                    f"{ms['before']:.3f} ms, masks {ms['masks']:.3f} ms (same decisions)")


def run(args: argparse.Namespace) -> int:
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep the output (whose tail is all that comes back) to the results
    start = time.perf_counter()
    deadline = start + args.budget_s
    device = args.device
    gpu = "-"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})"
    header = [
        "# Generator on a GPU: random-weight models of the catalog's shapes (bench/bench_generator_gpu.py)",
        "",
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
        f"Python {platform.python_version()}, GPU {gpu}, {os.cpu_count()} CPUs; device {device}, "
        f"max_new_tokens 32, {D}-d z, {N_TOKENS} soft tokens, antonyms demos",
    ]
    report = Report(Path(args.out) if args.out else None, header, [], [])
    for line in header:
        say(line)
    if device.startswith("cuda") and not torch.cuda.is_available():
        report.note("ERROR: --device cuda but torch sees no CUDA GPU")
        return 1
    mdir = Path(args.models_dir)
    found = [mdir / m for m in MODELS if (mdir / m / "config.json").is_file()]
    found += sorted(p for p in mdir.iterdir() if p.is_dir() and p not in found and (p / "config.json").is_file())
    if args.models:
        found = [p for p in found if p.name in args.models]
    if not found:
        report.note(f"ERROR: no model folders in {mdir}")
        return 1
    try:
        sizes = sorted({int(json.loads((p / "config.json").read_text()).get("vocab_size", 0)) for p in found} - {0})
        stop_rule(device, report, sizes)
    except Exception as exc:
        traceback.print_exc()
        report.note(f"stopping rule: ERROR {type(exc).__name__}: {str(exc)[:300]}")
    tmp = Path(tempfile.mkdtemp(prefix="iz-gpu-", dir=args.tmp_dir))
    try:
        for i, src in enumerate(found):
            if time.perf_counter() > deadline:
                report.note(f"{src.name}: skipped (time budget)")
                continue
            try:
                bench_model(src, tmp, args, report, smallest=i == 0, deadline=deadline)
            except Exception as exc:
                traceback.print_exc()
                report.note(f"{src.name}: ERROR {type(exc).__name__}: {str(exc)[:300]}")
            free(device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.note(f"total {time.perf_counter() - start:.0f} s")
    say("\n" + report.markdown())
    report.write()
    return 1 if any("ERROR" in n or ": FAIL" in n for n in report.notes) else 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepare", metavar="DIR", help="write tokenizers + configs (from the GGUF files) to DIR")
    ap.add_argument("--models-dir", default=".gpu", help="folder of <model>/ tokenizer+config folders")
    ap.add_argument("--models", type=lambda s: s.split(","), help="comma-separated subset of the model folders")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--out", help="also write the Markdown report here")
    ap.add_argument("--n", type=int, default=25, help="soft prompts per batched speed setting (default 25)")
    ap.add_argument("--n-single", type=int, default=10, help="soft prompts decoded one at a time (default 10)")
    ap.add_argument("--n-check", type=int, default=8, help="soft prompts in the correctness check (default 8)")
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[8, 25])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--budget-s", type=float, default=240.0, help="skip what is left after this many seconds")
    ap.add_argument("--tmp-dir", help="where the random-weight model folders go (default: the system's temp)")
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare(Path(args.prepare), args.models or MODELS)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
