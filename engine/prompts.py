"""The generator's words: the induction prompt around the demos, and the cleaning of what comes back.

Why this is a module of its own: everything here is pure text (standard library only, no torch, no transformers,
no model), so the rules that decide what a run's instructions look like can be unit-tested in milliseconds, and
one definition serves every place that writes or reads an instruction:

* the transformers backend (:class:`engine.generators.transformers.Generator`) and the llama.cpp backend
  (:class:`engine.generators.llama_cpp.LlamaCppGenerator`) tokenise the same prompt text, split at the same soft-token
  slot, stop decoding by the same rule and clean the output alike, so the two backends stay interchangeable;
* APE (:mod:`engine.ape`) sends the same framing to an endpoint and cleans the answers with the same rules, so
  both methods' instructions read alike and compare fairly. APE imports this module without paying for torch.

The prompt, through the model's chat template (SmolLM2 shown; ``<soft>`` marks the default slot of the soft
tokens, ``"tail"``, chosen by measurement, see :class:`engine.generators.transformers.Generator`)::

    <|im_start|>system ...<|im_end|>
    <|im_start|>user
    I gave a friend an instruction and five inputs. The friend read the instruction and wrote an output for
    every one of the inputs. Here are the input-output pairs:

    Input: cat, elephant
    Output: elephant
    ...

    <soft>The instruction was to<|im_end|>
    <|im_start|>assistant
    The instruction was to

and the model continues the answer: " write the larger of the two animals." -> "Write the larger of the two
animals." (:func:`clean_instruction`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

__all__ = [
    "ANSWER_PREFIX",
    "APE_SYSTEM",
    "CHAT_TAIL",
    "PLACEHOLDER_INSTRUCTION",
    "PROMPT_STYLES",
    "SOFT_POSITIONS",
    "ChatTemplate",
    "Demo",
    "PromptStyle",
    "SoftPosition",
    "DIRECT_BASE_PREFIX",
    "DIRECT_QUESTION",
    "DIRECT_SYSTEM",
    "answer_prefix",
    "ape_prompt",
    "ape_system",
    "build_prompt_text",
    "clean_instruction",
    "demo_pairs",
    "is_echo",
    "sort_vocabulary",
    "split_at_soft_slot",
]

#: The text the model continues. Kept as the paper's wording so instructions read as "... was to <verb> ...".
ANSWER_PREFIX = "The instruction was to"

#: Returned (and logged) when the model wrote nothing usable, so a run never stores an empty instruction.
PLACEHOLDER_INSTRUCTION = "Give the output for the input."

#: How a chat endpoint is asked to continue the forward prompt (APE): chat models answer a question rather than
#: continue the user's text, so the last line asks for the completion outright.
CHAT_TAIL = f"Complete the sentence: {ANSWER_PREFIX}"

#: APE's system turn for a chat endpoint: the completion only, no preamble for the cleaner to cut away.
APE_SYSTEM = (
    "You infer the instruction behind input-output pairs. Reply with only the words that complete the user's last "
    "sentence: one short imperative instruction, nothing else."
)

#: Where the soft tokens go (see :class:`engine.generators.transformers.Generator` for the measurements behind the default).
SoftPosition = Literal["start", "user", "pairs", "tail", "answer"]
SOFT_POSITIONS: tuple[SoftPosition, ...] = ("start", "user", "pairs", "tail", "answer")

#: How the generator is asked (see :func:`split_at_soft_slot`):
#:
#: * ``"paper"``: the paper's framing ("I gave a friend ... The instruction was to"), the answer prefilled with
#:   "The instruction was to". Written for base models that continue text.
#: * ``"plain"``: one short sentence before the pairs, then the paper's ending (kept for experiments).
#: * ``"direct"``: for chat models. A system turn (:data:`DIRECT_SYSTEM`), the pairs as "Input: x -> Output: y",
#:   and a question (:data:`DIRECT_QUESTION`) asking for one imperative instruction that names the task; the
#:   assistant turn is left open. A small chat model given the paper's framing restates the framing ("Based on
#:   the output pairs provided, the instruction appears to be:"); asked directly, it names the task
#:   (bench/bench_generator.py, BENCHMARKS.md).
PromptStyle = Literal["paper", "plain", "direct"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("paper", "plain", "direct")

#: The direct style's system turn and closing question.
DIRECT_SYSTEM = "You infer the task behind examples."
DIRECT_QUESTION = (
    "What was the instruction? Answer with the instruction only, as one imperative sentence that names the task."
)
#: What a model without a chat template continues under the direct style (it has no assistant turn to open).
DIRECT_BASE_PREFIX = "Instruction:"

#: Renders chat messages to the text of a prompt that ends with the assistant's turn opened (a tokenizer's
#: ``apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``).
ChatTemplate = Callable[[list[dict[str, str]]], str]

#: Stands for the soft tokens while the prompt is text; no tokenizer or template produces it on its own.
_SOFT_MARKER = "\u0000SOFT\u0000"

_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]


class Demo(Protocol):
    """What a demo needs (``engine.tasks.Example`` fits): an input and one or more right answers."""

    input: str
    answers: Sequence[str]


# --------------------------------------------------------------------------------------------------------------
# Building the prompt


def _count_word(n: int) -> str:
    """The paper writes "five inputs"; past twenty a digit reads better than a long number word."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _answer_of(demo: Any) -> str:
    """The answer a demo shows: the first of ``answers`` (the primary one), or ``output`` for objects without it."""
    answers = getattr(demo, "answers", None)
    if answers is None:
        answers = getattr(demo, "output", "")
    if isinstance(answers, str):
        return answers
    return str(answers[0]) if len(answers) else ""


def demo_pairs(demos: Sequence[Demo]) -> tuple[tuple[str, str], ...]:
    """The ``(input, shown answer)`` pairs the prompt shows, in order.

    Exactly what the prompt text depends on, so the backends key their per-demo-set prompt caches on it: demos
    that differ only in answers the prompt does not show share one cache entry.
    """
    return tuple((d.input, _answer_of(d)) for d in demos)


def _framing(demos: Sequence[Demo], style: str) -> tuple[str, str]:
    """(the sentence before the demos, the demos as text), the two parts the soft-token slots sit between."""
    if style == "direct":
        # As measured (DESIGN.md): no sentence before the pairs, one pair a line.
        return "", "\n".join(f"Input: {text} -> Output: {answer}" for text, answer in demo_pairs(demos))
    pairs = "\n\n".join(f"Input: {text}\nOutput: {answer}" for text, answer in demo_pairs(demos))
    n = len(demos)
    if style == "plain":
        # Fewer words to echo back ("Give a friend an instruction and five inputs."), which the Qwen models do.
        return "A person followed one short instruction to write each output below from its input.", pairs
    if n == 1:
        head = (
            "I gave a friend an instruction and one input. The friend read the instruction and wrote an output "
            "for the input. Here is the input-output pair:"
        )
    else:
        head = (
            f"I gave a friend an instruction and {_count_word(n)} inputs. The friend read the instruction and "
            "wrote an output for every one of the inputs. Here are the input-output pairs:"
        )
    return head, pairs


#: Words that say nothing about any task: what the framing sentence is made of, their other forms, and the filler
#: a generator adds when it restates the framing ("... based on the given instruction", "... the following rules").
_FRAME_FILLER = frozenset(re.findall(r"[a-z]+", """
    give gave given giving write wrote written writing read reading friend instruction input output pair every each
    one all five inputoutput based following follow provided provide specific corresponding rule example set list
    different appear appears seem seems likely imperative
"""))

#: Small words that carry no content of their own; an instruction made only of these and framing words is an echo.
_FUNCTION_WORDS = frozenset(re.findall(r"[a-z]+", """
    a an the i you your we they them their he she it its to of for in on at by with from and or but so as is are
    was were be been has have had this that these those there here which who what how then than into per
"""))


def _stems(text: str) -> list[str]:
    """The words of ``text``, lower-cased, hyphens joined ("input-output" -> "inputoutput") and a plural s cut
    ("inputs" -> "input"): just enough to match an instruction's words to the framing's."""
    words = re.findall(r"[a-z]+", text.lower().replace("-", ""))
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def _framing_words() -> frozenset[str]:
    demo = type("Demo", (), {"input": "x", "answers": ("y",)})()
    heads = [_framing([demo] * n, style)[0] for n in (1, 5) for style in PROMPT_STYLES] + [ANSWER_PREFIX]
    # The direct style's system turn, not its question: the question's "sentence", "name", "answer" are words of
    # real tasks too ("Negate the sentence.").
    heads += [DIRECT_SYSTEM, DIRECT_BASE_PREFIX]
    return frozenset({w for head in heads for w in _stems(head)} | _FRAME_FILLER) - _FUNCTION_WORDS


def is_echo(instruction: str) -> bool:
    """Whether ``instruction`` only restates the induction prompt (e.g. "Write an output for every one of the
    inputs based on the given instruction."): every word it has is a framing word or a small function word.

    Why: a generator that ignores its soft prompt tends to paraphrase the framing around the demos; such an
    instruction names no task, so the black box answers it with a guess, and scoring it spends an evaluation on
    nothing (29% of the soft-prompt candidates in the quality benchmark's runs). Deliberately strict: one
    word outside the framing ("... that is the opposite of the input") makes it a real instruction, however
    generic, so a right instruction is never taken for an echo. An empty text is an echo.
    """
    return all(w in _ECHO_VOCABULARY or w in _FUNCTION_WORDS for w in _stems(instruction))


def answer_prefix(style: str, chat: bool) -> str:
    """The words the model's answer starts with, already written for it (the prompt's last words).

    The paper's styles prefill "The instruction was to", so the model continues the sentence with a verb phrase
    instead of chatting about the question. The direct style asks a question and leaves the chat model's answer
    open; a model without a chat template gets "Instruction:" to continue.
    """
    if style != "direct":
        return ANSWER_PREFIX
    return "" if chat else DIRECT_BASE_PREFIX


def _user_turn(head: str, pairs: str, style: str, slot: Callable[..., str], chat: bool) -> str:
    """The user's text with the soft-token marker in place (see :func:`split_at_soft_slot` for the slots)."""
    in_tail = ("tail",) if chat else ("tail", "answer")
    if style == "direct":
        closing = DIRECT_QUESTION if chat else f"{DIRECT_QUESTION}\n\n{DIRECT_BASE_PREFIX}"
        return f"{slot('user', 'pairs')}{pairs}\n\n{slot(*in_tail)}{closing}"
    return f"{slot('user')}{head}\n\n{slot('pairs')}{pairs}\n\n{slot(*in_tail)}{ANSWER_PREFIX}"


def build_prompt_text(demos: Sequence[Demo], style: str = "paper") -> str:
    """The user turn without a chat template: the framing of ``style``, the demos, the closing words.

    Paper style: "I gave a friend an instruction and five inputs ..." (demo count adapted), ending with "The
    instruction was to". ``style`` is one of :data:`PROMPT_STYLES`; anything unknown gets the paper's.
    """
    head, pairs = _framing(demos, style)
    return _user_turn(head, pairs, style, lambda *_: "", chat=False)


def split_at_soft_slot(
    demos: Sequence[Demo],
    *,
    soft_position: SoftPosition = "tail",
    style: str = "paper",
    chat_template: ChatTemplate | None = None,
    system_prompt: str | None = None,
) -> tuple[str, str]:
    """The whole prompt text, split where the soft tokens go: ``(before, after)``.

    The decoder embeds ``before``, then the soft tokens, then ``after``, and continues from the end of ``after``
    (:func:`answer_prefix` of the style). ``before + after`` is the same text for every position, so the place of
    the soft tokens is the only thing ``soft_position`` changes:

    * ``"start"``: before everything (``before`` is empty; the backend still puts a base model's BOS first);
    * ``"user"``: at the start of the user turn, after any system turn the template writes;
    * ``"pairs"``: right before the first demo, after the framing sentence (the direct style has none: the same
      as ``"user"``);
    * ``"tail"``: after the demos, right before the user turn's closing words ("The instruction was to", or the
      direct style's question);
    * ``"answer"``: inside the assistant's turn, before any prefilled words (without a chat template there is no
      such turn, and this is the same as ``"tail"``).

    With ``chat_template`` the user turn (and the system turn: ``system_prompt``, else :data:`DIRECT_SYSTEM` for
    the direct style) goes through it and the opened assistant turn is prefilled with :func:`answer_prefix`;
    without one (a base model) the user text itself ends with it.
    """
    if soft_position not in SOFT_POSITIONS:
        raise ValueError(f"soft_position must be one of {', '.join(SOFT_POSITIONS)}, not {soft_position!r}")
    head, pairs = _framing(demos, style)

    def slot(*positions: str) -> str:
        return _SOFT_MARKER if soft_position in positions else ""

    body = _user_turn(head, pairs, style, slot, chat=chat_template is not None)
    if chat_template is not None:
        messages = [{"role": "user", "content": body}]
        system = system_prompt or (DIRECT_SYSTEM if style == "direct" else None)
        if system:
            messages.insert(0, {"role": "system", "content": system})
        text = chat_template(messages) + slot("answer") + answer_prefix(style, chat=True)
    else:
        text = body
    text = slot("start") + text
    before, sep, after = text.partition(_SOFT_MARKER)
    if not sep or _SOFT_MARKER in after:
        raise ValueError("the chat template dropped or repeated the soft-token slot")
    return before, after


def ape_prompt(demos: Sequence[Demo], api: str, style: str = "paper") -> str:
    """APE's forward prompt for ``api`` (``"chat"`` or ``"completions"``) in the generator's prompt ``style``.

    A completions endpoint continues the raw text (:func:`build_prompt_text`), which ends with "The instruction
    was to" (as in APE) or, in the direct style, "Instruction:". A chat endpoint gets the paper's framing without
    those last words and a closing :data:`CHAT_TAIL` asking for the completion, or the direct style's user turn
    as it is (its question already asks for the instruction alone). The system turn: :func:`ape_system`.
    """
    if style == "direct":
        head, pairs = _framing(demos, style)
        return _user_turn(head, pairs, style, lambda *_: "", chat=api == "chat")
    text = build_prompt_text(demos, style)
    if api != "chat":
        return text
    head = text.rstrip()
    if head.endswith(ANSWER_PREFIX):
        head = head[: -len(ANSWER_PREFIX)].rstrip()
    return f"{head}\n\n{CHAT_TAIL}"


def ape_system(api: str, style: str = "paper") -> str | None:
    """APE's system turn: the direct style's own for a chat endpoint, :data:`APE_SYSTEM` for the paper's, none
    for a completions endpoint (it has no turns)."""
    if api != "chat":
        return None
    return DIRECT_SYSTEM if style == "direct" else APE_SYSTEM


# --------------------------------------------------------------------------------------------------------------
# Reading the answer

_QUOTES = "\"'`“”‘’*_ "
_ECHO = re.compile(r"\b(?:inputs?|outputs?)\s*:|\bthe\s+instructions?\s+(?:was|were|is|are)\b", re.IGNORECASE)
_LEAD = re.compile(
    r"^(?:(?:the\s+)?(?:instructions?|task)\s+(?:was|were|is|are)\s*(?:to\s+)?"
    r"|(?:the\s+)?(?:instructions?|task|answer)\s*:\s*|to\s+|[-,;:>#•–—]+\s*|\d+[.)]\s+)+",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
#: Markdown a chat model dresses its answer in: bold or italic stars, doubled underscores, code ticks.
_MARKUP = re.compile(r"\*+|__+|`+")


def _strip_lead(text: str) -> str:
    """Strip whitespace, quotes and lead-ins ("The instruction was to", "to ", "Instruction:", a leading colon or
    list mark) until none is left."""
    while True:
        stripped = _LEAD.sub("", text.strip().strip(_QUOTES).strip()).strip()
        if stripped == text:
            return text
        text = stripped


def _first_line(text: str) -> str:
    """The first line with words in it, lead-ins stripped; a line that only introduces the next one ("Here is
    the instruction:") is skipped when a line follows it."""
    lines = [_strip_lead(line) for line in text.split("\n")]
    lines = [line for line in lines if any(ch.isalnum() for ch in line)]
    return next((line for line in lines if not line.endswith(":")), lines[-1] if lines else "")


def clean_instruction(raw: str) -> str:
    """One imperative sentence from raw model text, or ``""`` when nothing usable is left.

    Rules, in order: unwrap markdown (stars, ticks); drop lead-ins ("The instruction was to", "to ", "The task is
    to", "Instruction:" labels, quotes, a leading colon; the prompt already said them); keep the first line with
    words (skipping a line that ends with a colon and only introduces the next); cut where the model starts
    echoing the prompt ("Input:", "Output:", "The instruction was"); keep the first sentence; strip quotes at the
    ends; ask for two words at least; capitalise the first letter and end with a period. So ``' to write the
    larger animal.\\nInput: ...'`` becomes "Write the larger animal.", and a chat model's
    ``':\\n\\n**"Write the first letter of the name provided."**'`` becomes "Write the first letter of the name
    provided." Always the same rules, so equal raw text gives equal instructions (and the runner pays the black
    box once for them).
    """
    text = _first_line(_MARKUP.sub("", raw.replace("\r", "\n")))
    echo = _ECHO.search(text)
    if echo:
        text = text[: echo.start()]
    text = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    text = re.sub(r"\s+", " ", _strip_lead(text)).rstrip(" ,;:-" + _QUOTES).strip()
    if text.count('"') % 2:  # a quote left unpaired by the lead-in's removal ('"Split" the words' -> 'Split" ...')
        text = text.replace('"', "")
    if sum(1 for word in text.split() if any(ch.isalnum() for ch in word)) < 2:
        return ""
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text


def sort_vocabulary(texts: Sequence[str], specials: Iterable[int | None] = ()) -> tuple[set[int], set[int]]:
    """(stop ids, content ids) of a vocabulary, given each token id's decoded text (``texts[i]`` for id ``i``).

    Decoding stops once a row wrote a stop token after some content: :func:`clean_instruction` keeps only the
    first line and the first sentence, so every token after a newline or a sentence end is wasted time. A stop
    token is one whose text holds a newline or ends a sentence; a content token is one with a letter or digit
    (a newline before any of those does not stop a row: models often start their answer on a new line).
    ``specials`` (end of sequence, padding; ``None`` is skipped) always stop and never count as content.
    """
    stop: set[int] = set()
    content: set[int] = set()
    for token_id, text in enumerate(texts):
        if "\n" in text or text.rstrip().endswith((".", "!", "?")):
            stop.add(token_id)
        if any(ch.isalnum() for ch in text):
            content.add(token_id)
    for special in specials:
        if special is not None:
            stop.add(int(special))
            content.discard(int(special))
    return stop, content


#: Computed once, from the framings themselves, so a change of wording changes what counts as an echo.
_ECHO_VOCABULARY = _framing_words()
