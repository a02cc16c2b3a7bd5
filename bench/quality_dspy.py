"""DSPy's GEPA as a baseline of the quality benchmark (bench/quality.py), bench-only.

Why a baseline from outside the project: GEPA (reflective prompt evolution, arXiv 2507.19457) is what a DSPy user
would reach for to tune one instruction, so the benchmark should say whether InstructZero beats it on equal terms.
Equal terms means: the same task, seed and splits (GEPA proposes from the demos and scores candidates on the dev
split), the same black box (the engine's own embedded server, shared through its pool), the same number of
black-box calls counted at the endpoint (a counting proxy in front of the server, and a stop once it has seen
``max_calls`` requests; GEPA checks between iterations, so a cell may end one iteration past it, and its row says
how far), and the winner scored exactly like every other method's: an ordinary engine run of the
``manual`` method with that one instruction (same evaluation template, metric, dev and test split).

The product never imports dspy; this module imports it lazily, so the rest of the benchmark runs without it
(``pip install -e '.[dspy]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

METHOD = "dspy_gepa"
#: Room the reflection LM gets for a new instruction (the task LM gets the engine's own max_tokens).
REFLECTION_MAX_TOKENS = 256


class CountingProxy:
    """An OpenAI-compatible pass-through on 127.0.0.1 that counts the completion requests it forwards.

    Why at the endpoint and not in DSPy: GEPA's ``max_metric_calls`` counts metric evaluations only, not the
    reflection LM's calls nor an adapter's retries; the benchmark's budget is black-box calls, whoever makes them.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"  # paths are forwarded as DSPy sends them (/v1/...)
        self.calls = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=600.0, trust_env=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._forward(self, "POST")

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="iz-gepa-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> str:
        self._thread.start()
        return self.base_url

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if method == "POST":
            with self._lock:
                self.calls += 1
        try:
            r = self._client.request(method, self.upstream + handler.path, content=body,
                                     headers={"Content-Type": handler.headers.get("Content-Type", "application/json")})
            status, data, ctype = r.status_code, r.content, r.headers.get("content-type", "application/json")
        except httpx.HTTPError as exc:
            status, data, ctype = 502, json.dumps({"error": {"message": str(exc)}}).encode(), "application/json"
        if status >= 400:
            with self._lock:
                self.failed += 1
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


def _import_dspy() -> Any:
    """dspy, or a SystemExit that says how to get it (the product itself never needs it)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of LiteLLM's price list
    try:
        import dspy
        import gepa  # noqa: F401 - GEPA's engine; dspy.GEPA fails late without it
    except ImportError as exc:
        raise SystemExit(f"the dspy_gepa baseline needs DSPy and GEPA ({exc}): pip install -e '.[dspy]'") from None
    return dspy


def _engine_adapter(dspy: Any, task: Any) -> Any:
    """A DSPy adapter that asks exactly what the engine asks: the task's evaluation prompt (by default
    ``Instruction: {instruction}\\n\\nInput: {input}\\n\\nOutput:``), the completion taken whole as the output.

    Why not DSPy's ChatAdapter: GEPA should tune the instruction for the prompt it is finally scored with. (The
    ChatAdapter works too, ``adapter="chat"``: Qwen2.5-Coder 0.5B and 1.5B kept its ``[[ ## output ## ]]`` markers
    on 6 of 6 antonyms, but its longer prompt took twice as long a call, and a parse failure would score 0.)
    Nothing can fail to parse here, so every metric call is exactly one request."""
    from engine.tasks.model import Example

    class EngineTemplateAdapter(dspy.Adapter):
        def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
            prompt = task.render(signature.instructions, Example(str(inputs["input"]), ("",)), "chat")
            system = [{"role": "system", "content": prompt.system}] if prompt.system else []
            return [*system, {"role": "user", "content": prompt.user}]

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            return {"output": completion.strip()}

    return EngineTemplateAdapter()


def _metric(task: Any) -> Any:
    """The task's own metric, with feedback GEPA's reflection can read (the right answers and what came back)."""
    import dspy

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        text = str(getattr(pred, "output", None) or "")
        answers = tuple(gold.answers)
        score = float(task.score(text, answers))
        shown = " or ".join(repr(a) for a in answers[:5]) + (" (or another right answer)" if len(answers) > 5 else "")
        verdict = "right" if score >= 1.0 else "wrong" if score <= 0.0 else f"partly right ({score:.2f})"
        return dspy.Prediction(score=score, feedback=f"Expected {shown}; got {text!r}: {verdict} under the task's "
                                                     f"{task.metric} metric.")

    return metric


def _optimise(dspy: Any, task: Any, splits: Any, profile: Any, seed: int, api_base: str, *,
              stop: Any, max_calls: int, adapter: str) -> tuple[Any, list[str]]:
    """GEPA from DSPy's default instruction: reflection on the demos, candidates scored on the dev split.
    Returns the tuned program (with ``detailed_results``) and every instruction the reflection proposed."""
    from dspy.teleprompt.gepa import InstructionProposer

    # The task LM asks like the engine's client (engine.config.EndpointProfile: temperature 0, max_tokens 32,
    # stop at a blank line), with the task's own overrides; the reflection LM samples, seeded, on the same server.
    answer = {"temperature": profile.temperature, "max_tokens": profile.max_tokens, "stop": list(profile.stop),
              **task.blackbox_overrides()}
    if adapter == "chat":  # the field markers need room and must not be cut at the blank line before them
        answer["max_tokens"] += 16
        answer.pop("stop", None)
    # engine="litellm": DSPy's default engine sends OpenAI's newer ``max_completion_tokens``, which llama.cpp's
    # server ignores (answers and reflections then run to the end of the context); LiteLLM sends ``max_tokens``.
    endpoint = {"api_base": api_base, "api_key": "unused", "cache": False, "num_retries": 0, "engine": "litellm"}
    lm = dspy.LM("openai/blackbox", **endpoint, **answer)
    reflection = dspy.LM("openai/blackbox", **endpoint, temperature=1.0, max_tokens=REFLECTION_MAX_TOKENS, seed=seed)
    chosen = dspy.ChatAdapter(use_json_adapter_fallback=False) if adapter == "chat" else _engine_adapter(dspy, task)
    proposed: list[str] = []

    class RecordingProposer(InstructionProposer):
        """DSPy's own proposer (JSON to the reflection LM), recording what it proposes."""

        def __call__(self, candidate: dict[str, str], reflective_dataset: Any,
                     components_to_update: list[str]) -> dict[str, str]:
            out = super().__call__(candidate, reflective_dataset, components_to_update)
            proposed.extend(out.values())
            return out

    gepa = dspy.GEPA(metric=_metric(task), max_metric_calls=max_calls, reflection_lm=reflection,
                     instruction_proposer=RecordingProposer(), num_threads=1, track_stats=True, seed=seed,
                     gepa_kwargs={"stop_callbacks": [stop]})

    def example(ex: Any) -> Any:
        return dspy.Example(input=ex.input, answers=list(ex.answers)).with_inputs("input")

    # DSPy's per-minibatch progress bars write to stdout, where bench/quality.py prints its tables.
    with dspy.context(lm=lm, adapter=chosen), contextlib.redirect_stdout(io.StringIO()):
        tuned = gepa.compile(dspy.Predict(dspy.Signature("input -> output")),
                             trainset=[example(e) for e in splits.demos], valset=[example(e) for e in splits.dev])
    return tuned, proposed


def run_gepa_cell(task_name: str, seed: int, settings: dict[str, Any], *, blackbox: str | None, max_calls: int,
                  log: IO[str], adapter: str = "engine") -> dict[str, Any]:
    """Tune DSPy's default instruction with GEPA on ``task_name`` / ``seed`` within ``max_calls`` black-box calls,
    then score the winner with an engine ``manual`` run; one row shaped like bench/quality.py's.

    ``adapter``: "engine" (the engine's evaluation prompt, see :func:`_engine_adapter`) or "chat" (DSPy's
    ChatAdapter, without its JSON fallback, whose second call would be paid outside GEPA's budget).
    An exception is the caller's to turn into a failed row (bench/quality.py's ``run_dspy`` does)."""
    dspy = _import_dspy()
    from engine.config import load_config
    from engine.models.embedded import server_for
    from engine.runner import Engine
    from engine.store import open_history
    from engine.tasks.loader import load_task
    from engine.tasks.splits import make_splits

    t0 = time.perf_counter()
    config = load_config()
    run = config.run.with_overrides({**settings, "seed": seed})
    task = load_task(task_name)
    if task.metric == "judge":
        raise SystemExit(f"{task_name} is scored by a judge model: the dspy_gepa baseline supports answer metrics only")
    splits = make_splits(task, n_demos=run.n_demos, n_dev=run.n_dev, n_test=run.n_test, seed=seed)
    _, profile = config.endpoint(None, blackbox)
    if not profile.embedded:
        raise SystemExit("the dspy_gepa baseline runs on the embedded black box only")
    proxy = CountingProxy(server_for(profile.model).start())
    # GEPA's per-step lines and DSPy's warning on every answer cut at max_tokens would drown the benchmark's log.
    dspy_log = logging.getLogger("dspy")
    level = dspy_log.level
    dspy_log.setLevel(logging.ERROR)
    try:  # GEPA's max_metric_calls leaves out the reflection's calls: also stop once the endpoint has seen the cap
        tuned, proposed = _optimise(dspy, task, splits, profile, seed, proxy.start(), max_calls=max_calls,
                                    adapter=adapter, stop=lambda _state: proxy.calls >= max_calls)
    finally:
        proxy.close()
        dspy_log.setLevel(level)
    details = tuned.detailed_results
    seed_instruction = details.candidates[0].predictors()[0].signature.instructions
    instruction = tuned.predictors()[0].signature.instructions.strip() or seed_instruction
    gepa_s = time.perf_counter() - t0

    engine = Engine(config, open_history())
    run_id = engine.create_run(task_name, {**settings, "method": "manual", "seed": seed}, model=blackbox,
                               instructions=[instruction])

    async def score() -> dict[str, Any]:
        try:
            return await engine.execute(run_id)
        finally:  # close the clients, not the pool's server (Engine.aclose would stop it for the next cell)
            for bb in engine._blackboxes.values():
                await bb.aclose()

    summary = asyncio.run(score())
    engine.history.close()
    texts = [seed_instruction, *proposed]
    row = {
        "task": task_name, "method": METHOD, "seed": seed, "run_id": run_id, "engine_method": "manual",
        "test_score": summary["test_score"], "dev_score": summary["dev_score"],
        "evaluations": len(details.candidates), "calls": proxy.calls, "calls_failed": proxy.failed,
        "gepa_metric_calls": details.total_metric_calls, "reflection_calls": proxy.calls - details.total_metric_calls,
        "scoring_calls": summary["calls"], "best_instruction": instruction,
        "gepa_dev_score": max(details.val_aggregate_scores), "wall_s": round(time.perf_counter() - t0, 2),
        "gepa_s": round(gepa_s, 2), "distinct": len(set(texts)), "candidates": len(texts), "adapter": adapter,
        "proposed": proposed,  # GEPA keeps only the candidates that beat their parent: the rest are only here
    }
    print(f"[{METHOD}] {task_name:<24} seed {seed}: test {row['test_score']} dev {row['dev_score']} evals "
          f"{row['evaluations']} calls {row['calls']} (GEPA metric calls {row['gepa_metric_calls']}, scoring "
          f"{row['scoring_calls']}) ({row['wall_s']:.0f} s) {instruction!r}", file=log, flush=True)
    return row
