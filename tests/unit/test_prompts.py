"""The generator's words without a model (engine/prompts.py): the induction prompt, the soft-token slot, APE's
forward prompt, the cleaning of raw model text and the decoding stop rule.

These rules decide what every run's instructions look like for both generator backends and APE, so they are
pinned down here on plain strings; the integration tests only check that real models go through them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from engine.prompts import (
    ANSWER_PREFIX,
    APE_SYSTEM,
    CHAT_TAIL,
    DIRECT_QUESTION,
    DIRECT_SYSTEM,
    PLACEHOLDER_INSTRUCTION,
    SOFT_POSITIONS,
    answer_prefix,
    ape_prompt,
    ape_system,
    build_prompt_text,
    clean_instruction,
    demo_pairs,
    is_echo,
    sort_vocabulary,
    split_at_soft_slot,
)


@dataclass(frozen=True)
class Demo:
    input: str
    answers: tuple[str, ...]


DEMOS = [Demo("cat, elephant", ("elephant", "the elephant")), Demo("whale, mouse", ("whale",)),
         Demo("ant, horse", ("horse",))]


def chatml(messages: list[dict[str, str]]) -> str:
    """A ChatML template like SmolLM2's, with the assistant turn opened (add_generation_prompt=True)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return f"{turns}<|im_start|>assistant\n"


# -- the prompt -------------------------------------------------------------------------------------------------


def test_paper_prompt_shows_every_demo_in_order_with_its_first_answer() -> None:
    text = build_prompt_text(DEMOS)
    assert text == (
        "I gave a friend an instruction and three inputs. The friend read the instruction and wrote an output for "
        "every one of the inputs. Here are the input-output pairs:\n\n"
        "Input: cat, elephant\nOutput: elephant\n\n"
        "Input: whale, mouse\nOutput: whale\n\n"
        "Input: ant, horse\nOutput: horse\n\n"
        "The instruction was to"
    )
    reordered = build_prompt_text(DEMOS[::-1])
    assert reordered.index("Input: ant, horse") < reordered.index("Input: cat, elephant")
    assert "the elephant" not in text  # only the primary answer is shown


def test_demo_count_is_spelled_and_one_demo_is_singular() -> None:
    one = build_prompt_text(DEMOS[:1])
    assert one.startswith("I gave a friend an instruction and one input. ")
    assert "Here is the input-output pair:\n\nInput: cat, elephant" in one
    assert "twenty inputs" in build_prompt_text([Demo(f"x{i}", ("y",)) for i in range(20)])
    assert "25 inputs" in build_prompt_text([Demo(f"x{i}", ("y",)) for i in range(25)])


def test_plain_style_has_its_own_short_framing() -> None:
    text = build_prompt_text(DEMOS, "plain")
    assert text.startswith(
        "A person followed one short instruction to write each output below from its input.\n\nInput: cat, elephant"
    )
    assert "friend" not in text and text.endswith("Output: horse\n\nThe instruction was to")


def test_demo_answers_from_output_or_a_plain_string() -> None:
    demos = [SimpleNamespace(input="a", output="b"), SimpleNamespace(input="c", answers="d"),
             SimpleNamespace(input="e", answers=())]
    assert demo_pairs(demos) == (("a", "b"), ("c", "d"), ("e", ""))
    assert demo_pairs(DEMOS) == (("cat, elephant", "elephant"), ("whale, mouse", "whale"), ("ant, horse", "horse"))


@pytest.mark.parametrize("template", [None, chatml], ids=["base", "chat"])
@pytest.mark.parametrize("style", ["paper", "plain"])
def test_the_soft_slot_moves_nothing_but_itself(template: object, style: str) -> None:
    """Every position splits the same text, and the decoder always continues from "The instruction was to"."""
    whole = {pos: split_at_soft_slot(DEMOS, soft_position=pos, style=style, chat_template=template)
             for pos in SOFT_POSITIONS}
    texts = {before + after for before, after in whole.values()}
    assert len(texts) == 1
    (text,) = texts
    body = build_prompt_text(DEMOS, style)
    assert text == (body if template is None else chatml([{"role": "user", "content": body}]) + ANSWER_PREFIX)
    assert all(after.endswith(ANSWER_PREFIX) for _, after in whole.values())
    # Five distinct slots with a chat template; a base model has no turns, so there user == start and
    # answer == tail (its BOS is the backend's, added to the token ids).
    assert len({before for before, _ in whole.values()}) == (5 if template else 3)


def test_soft_slot_positions_with_a_chat_template() -> None:
    def split(pos: str, **kw: object) -> tuple[str, str]:
        return split_at_soft_slot(DEMOS, soft_position=pos, chat_template=chatml, **kw)  # type: ignore[arg-type]

    assert split("start")[0] == ""
    before, after = split("user")
    assert before == "<|im_start|>user\n" and after.startswith("I gave a friend")
    before, after = split("user", system_prompt="Be brief.")
    assert before == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    before, after = split("pairs")
    assert before.endswith("Here are the input-output pairs:\n\n") and after.startswith("Input: cat, elephant\n")
    before, after = split("tail")
    assert before.endswith("Output: horse\n\n")
    assert after == "The instruction was to<|im_end|>\n<|im_start|>assistant\nThe instruction was to"
    before, after = split("answer")
    assert before.endswith("<|im_end|>\n<|im_start|>assistant\n") and after == ANSWER_PREFIX


def test_soft_slot_positions_without_a_chat_template() -> None:
    before, after = split_at_soft_slot(DEMOS, soft_position="tail")
    assert before == build_prompt_text(DEMOS)[: -len(ANSWER_PREFIX)] and after == ANSWER_PREFIX
    assert split_at_soft_slot(DEMOS, soft_position="answer") == (before, after)
    assert split_at_soft_slot(DEMOS, soft_position="user") == ("", build_prompt_text(DEMOS))
    before, after = split_at_soft_slot(DEMOS, soft_position="pairs", style="plain")
    assert before.endswith("from its input.\n\n") and after.startswith("Input: cat, elephant\n")
    # A system prompt needs a chat template to go anywhere; a base model's prompt ignores it.
    assert split_at_soft_slot(DEMOS, system_prompt="Be brief.") == split_at_soft_slot(DEMOS)


def test_soft_slot_rejects_unknown_positions_and_templates_that_lose_the_slot() -> None:
    with pytest.raises(ValueError, match="soft_position"):
        split_at_soft_slot(DEMOS, soft_position="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slot"):
        split_at_soft_slot(DEMOS, soft_position="tail", chat_template=lambda m: "no user content here")


def test_ape_forward_prompt() -> None:
    assert ape_prompt(DEMOS, "completions") == build_prompt_text(DEMOS)
    chat = ape_prompt(DEMOS, "chat")
    assert chat == build_prompt_text(DEMOS)[: -len(ANSWER_PREFIX)] + CHAT_TAIL
    assert chat.count(ANSWER_PREFIX) == 1
    assert ape_system("chat") == APE_SYSTEM and ape_system("completions") is None


# -- the direct style (chat generators) ---------------------------------------------------------------------------


def test_direct_style_asks_for_the_task_and_leaves_the_answer_open() -> None:
    """A system turn, one pair a line, the question; the assistant's turn is opened and nothing is prefilled, so
    a chat model answers the question instead of continuing the paper's sentence."""
    before, after = split_at_soft_slot(DEMOS, soft_position="tail", style="direct", chat_template=chatml)
    assert before == (
        f"<|im_start|>system\n{DIRECT_SYSTEM}<|im_end|>\n<|im_start|>user\n"
        "Input: cat, elephant -> Output: elephant\nInput: whale, mouse -> Output: whale\n"
        "Input: ant, horse -> Output: horse\n\n"
    )
    assert after == f"{DIRECT_QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert "friend" not in before + after and ANSWER_PREFIX not in before + after
    assert answer_prefix("direct", chat=True) == "" and answer_prefix("paper", chat=True) == ANSWER_PREFIX
    # the user's own system turn wins over the style's
    before, _ = split_at_soft_slot(DEMOS, style="direct", chat_template=chatml, system_prompt="Be brief.")
    assert before.startswith("<|im_start|>system\nBe brief.<|im_end|>") and DIRECT_SYSTEM not in before


@pytest.mark.parametrize("template", [None, chatml], ids=["base", "chat"])
def test_direct_style_soft_slots_split_one_text(template: object) -> None:
    whole = {pos: split_at_soft_slot(DEMOS, soft_position=pos, style="direct", chat_template=template)
             for pos in SOFT_POSITIONS}
    assert len({before + after for before, after in whole.values()}) == 1
    # no sentence before the pairs: "pairs" is "user"; a base model has no turns (user == start, answer == tail)
    assert whole["pairs"] == whole["user"]
    assert len({before for before, _ in whole.values()}) == (4 if template else 2)
    if template is not None:
        assert whole["answer"][1] == ""  # the assistant's turn, nothing prefilled
    else:
        assert whole["answer"] == whole["tail"]
        assert whole["tail"][1] == f"{DIRECT_QUESTION}\n\nInstruction:"
        assert build_prompt_text(DEMOS, "direct").endswith("Instruction:")


def test_ape_asks_in_the_runs_style() -> None:
    """APE's proposer gets the generator's words: in the direct style the same question and system turn."""
    chat = ape_prompt(DEMOS, "chat", "direct")
    assert chat.endswith(DIRECT_QUESTION) and chat.startswith("Input: cat, elephant -> Output: elephant\n")
    assert ape_system("chat", "direct") == DIRECT_SYSTEM
    assert ape_prompt(DEMOS, "completions", "direct") == build_prompt_text(DEMOS, "direct")
    assert ape_system("completions", "direct") is None


@pytest.mark.parametrize("text", [
    "Infer the task from the given examples.", "Infer the task behind the examples.",
    "Infer the task behind these examples.", "Based on the output pairs provided, the instruction appears to be.",
])
def test_echoes_of_the_direct_question_are_echoes(text: str) -> None:
    assert is_echo(text)


@pytest.mark.parametrize("text", [
    "Transform the input word into its opposite.", "Determine the negation of the given statement.",
    "Identify the first letter of each word in the input.", "Name the task of sorting words.",
])
def test_instructions_that_name_a_task_are_not_echoes_in_any_style(text: str) -> None:
    assert not is_echo(text)


# -- cleaning ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    # the prompt's own words are dropped, however often the model repeats them
    (" to write the larger of the two animals.", "Write the larger of the two animals."),
    ("The instruction was to name the bigger animal", "Name the bigger animal."),
    ("The instructions were to pick one. Then more.", "Pick one."),
    ("The instruction was to The instruction was to sort the words", "Sort the words."),
    ("Instruction: reverse the word", "Reverse the word."),
    ("Answer: to add one", "Add one."),
    # an echo of the prompt ends the instruction
    (" write the larger animal.\nInput: cat", "Write the larger animal."),
    ('to "name the bigger animal" Output: dog', "Name the bigger animal."),
    ("sort the words inputs: a, b", "Sort the words."),
    ("count the letters, the instruction is simple", "Count the letters."),
    # one line, one sentence ("3.5" is no sentence end)
    ("round the number up\nthen write it", "Round the number up."),
    ("write it\r\nInput: x", "Write it."),
    ("round 3.5 up. Done", "Round 3.5 up."),
    # quotes, markdown, whitespace and trailing punctuation
    ('**"sort the words"**', "Sort the words."),
    ("`add one`", "Add one."),
    ("“spell it backwards”", "Spell it backwards."),
    ("  write   the\tword  ", "Write the word."),
    ("list the colours, ;", "List the colours."),
    ("list the colours:", "List the colours."),
    ("write it -", "Write it."),
    # a chat model's dressing: a leading colon, blank lines, bold, quotes, labels, list marks, a lead-in line
    (':\n\n**"Write the first letter of the name provided."**', "Write the first letter of the name provided."),
    ("**Instruction:** Transform the input word into its opposite.", "Transform the input word into its opposite."),
    ('Instruction: "Negate the sentence"', "Negate the sentence."),
    ("*Determine* the sentiment of the review.", "Determine the sentiment of the review."),
    ("The task is to identify the first letter.", "Identify the first letter."),
    ("The instruction is: Add the numbers.", "Add the numbers."),
    ("Sure! Here is the instruction:\n\nWrite the plural form.", "Write the plural form."),
    ("- Generate the opposite of the given word.", "Generate the opposite of the given word."),
    ("1. Sort the words alphabetically.", "Sort the words alphabetically."),
    ("> Reverse the word", "Reverse the word."),
    ("Task: translate the word into French", "Translate the word into French."),
    (' "Split" the input string into words.', "Split the input string into words."),
    ('Write "cat" in capitals.', 'Write "cat" in capitals.'),
    # an own ending is kept; only the first letter is capitalised
    ("what is the capital?", "What is the capital?"),
    ("say it loud!", "Say it loud!"),
    ("write the IPA form", "Write the IPA form."),
])
def test_clean_instruction(raw: str, clean: str) -> None:
    assert clean_instruction(raw) == clean


@pytest.mark.parametrize("raw", [
    "", "   \n\t ", "\n\n  \n", "yes", "to", '"elephant"', "!!! ???", "The instruction was to",
    "Input: cat\nOutput: elephant", "Output: whale", "```python\ndef f(x): return x\n```",
])
def test_nothing_usable_is_rejected(raw: str) -> None:
    assert clean_instruction(raw) == ""


def test_cleaning_is_stable() -> None:
    """A cleaned instruction (and the placeholder the backends fall back to) cleans to itself, so re-cleaning
    stored or APE-proposed text never changes it."""
    assert clean_instruction(PLACEHOLDER_INSTRUCTION) == PLACEHOLDER_INSTRUCTION
    for raw in ["to write the larger animal.\nInput: cat", '**"sort the words"**', "what is the capital?"]:
        once = clean_instruction(raw)
        assert once and clean_instruction(once) == once


# -- the stop rule ----------------------------------------------------------------------------------------------


def test_sort_vocabulary() -> None:
    texts = ["hello", "\n", ".", " world.", "?", "", "12", " ,", "a\nb"]
    stop, content = sort_vocabulary(texts, (5, None))
    assert stop == {1, 2, 3, 4, 5, 8}
    assert content == {0, 3, 6, 8}
    _, content = sort_vocabulary(texts, (0,))
    assert 0 not in content  # a special token never counts as text


def test_importing_prompts_loads_no_ml_stack() -> None:
    probe = "import engine.prompts, sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert not loaded & {"torch", "transformers", "numpy", "llama_cpp"}


@pytest.mark.parametrize("text", [
    "Write an output for every one of the inputs based on the given instruction.",
    "Give a friend an instruction and five inputs.",
    "Write an output for every one of the five input-output pairs provided.",
    "Give the output for the input.",
    "Read the instruction and write an output for every one of the inputs.",
    "",
])
def test_an_instruction_that_only_restates_the_framing_is_an_echo(text: str) -> None:
    assert is_echo(text)


@pytest.mark.parametrize("text", [
    "Write an output that is the opposite of the input.",  # one task word is enough
    "Write the larger of the two animals.",
    "Provide the capital of each country.",
    "Write an output for every one of the given input sentences.",
    "Give a friend an instruction about how to write a positive sentence based on given inputs.",
])
def test_one_word_about_the_task_makes_it_an_instruction(text: str) -> None:
    assert not is_echo(text)


def test_the_echo_vocabulary_follows_the_framing_wording() -> None:
    # Words of both prompt styles count (the plain one's "person"), task words never do.
    assert is_echo("A person followed one short instruction.") and not is_echo("A person translated it.")
