#!/usr/bin/env python3
"""(Re)create the data.jsonl files of the GENERATED built-in tasks.

Usage (from the repository root):

    python tests/data/make_builtin_tasks.py            # rewrite tasks/<name>/data.jsonl
    python tests/data/make_builtin_tasks.py --check    # exit 1 if a file is out of date

Deterministic: every task uses its own ``random.Random`` seeded with a fixed
value, so running the script twice produces byte-identical files.  Only the
data.jsonl files of the tasks in ``GENERATORS`` are written; their task.toml
files and all hand-written tasks are maintained by hand.

Standard library only.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_DIR = REPO_ROOT / "tasks"

SEED = 20240917

# Common, lower-case, purely alphabetic English words (no duplicates).  Used by
# the letter tasks, upper case, letter counting and word sorting.
_WORDS_TEXT = """
apple banana cherry grape lemon mango orange peach pear plum melon berry
table chair sofa lamp desk shelf carpet window door floor ceiling kitchen
garden flower tree grass forest river ocean island mountain valley desert
cloud rain snow storm thunder winter summer spring autumn morning evening
night planet star moon comet rocket engine wheel bicycle truck train plane
boat ship harbor bridge tunnel castle tower village city market school
library museum hospital church office factory farm barn stable horse zebra
tiger lion monkey rabbit turtle eagle falcon parrot penguin dolphin whale
shark salmon spider beetle butterfly camel donkey giraffe kangaroo elephant
pencil eraser ruler paper notebook letter envelope stamp camera picture
guitar violin piano trumpet drum whistle music dance story poem novel
bread butter cheese honey sugar pepper salt coffee cookie pizza noodle
soup salad carrot potato tomato onion garlic pumpkin cabbage bottle basket
bucket hammer ladder candle pillow blanket mirror button zipper jacket
sweater glove scarf helmet boot sandal ribbon crown jewel silver copper
marble granite crystal diamond velvet cotton leather wool yellow purple
violet scarlet crimson golden bright quiet gentle clever brave happy simple
strong little yesterday tomorrow question answer friend neighbor doctor
teacher farmer sailor pilot artist writer singer baker tailor king queen
prince knight dragon giant wizard puzzle riddle secret journey holiday
circus festival picnic party ticket magnet compass anchor lantern kettle
saucer teapot spoon fork knife plate bowl oven fridge sink towel soap
umbrella wallet pocket engineer quilt oyster yacht xylophone vase igloo
jungle kiwi nest owl uniform quiver walrus yogurt zebu ivory jigsaw
"""
WORDS = _WORDS_TEXT.split()

_UNITS_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
)
NUMBER_WORDS_UNITS = _UNITS_TEXT.split()
_TENS_TEXT = "twenty thirty forty fifty sixty seventy eighty ninety"
NUMBER_WORDS_TENS = ["", "", *_TENS_TEXT.split()]


def _below_hundred(n: int) -> str:
    if n < 20:
        return NUMBER_WORDS_UNITS[n]
    tens, units = divmod(n, 10)
    if units == 0:
        return NUMBER_WORDS_TENS[tens]
    return f"{NUMBER_WORDS_TENS[tens]}-{NUMBER_WORDS_UNITS[units]}"


def _below_thousand(n: int, use_and: bool) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts.append(f"{NUMBER_WORDS_UNITS[hundreds]} hundred")
    if rest:
        if hundreds and use_and:
            parts.append("and")
        parts.append(_below_hundred(rest))
    return " ".join(parts)


def number_to_words(n: int, use_and: bool = False) -> str:
    """English words for 1 <= n <= 999999, e.g. 342 -> 'three hundred forty-two'.

    With ``use_and`` the British form is produced ('three hundred and forty-two',
    'one thousand and five').
    """
    if not 1 <= n <= 999_999:
        raise ValueError(n)
    thousands, rest = divmod(n, 1000)
    parts = []
    if thousands:
        parts.append(f"{_below_thousand(thousands, use_and)} thousand")
    if rest:
        if thousands and use_and and rest < 100:
            parts.append("and")
        parts.append(_below_thousand(rest, use_and))
    return " ".join(parts)


def _answer(*answers: str):
    """One answer as a string, several (deduplicated, order kept) as a list."""
    unique = list(dict.fromkeys(answers))
    return unique[0] if len(unique) == 1 else unique


# --------------------------------------------------------------------------
# Generators: each returns the list of {"input", "output"} records of a task.
# --------------------------------------------------------------------------


def _shuffled_words(offset: int) -> list[str]:
    words = list(WORDS)
    random.Random(SEED + offset).shuffle(words)
    return words


def gen_first_letter():
    return [{"input": w, "output": w[0]} for w in _shuffled_words(10)]


def gen_second_letter():
    return [{"input": w, "output": w[1]} for w in _shuffled_words(11)]


def gen_last_letter():
    return [{"input": w, "output": w[-1]} for w in _shuffled_words(12)]


def gen_uppercase():
    return [{"input": w, "output": w.upper()} for w in _shuffled_words(13)]


def gen_letter_count():
    return [
        {"input": w, "output": _answer(str(len(w)), number_to_words(len(w)))} for w in _shuffled_words(14)
    ]


def _unique_pairs(rng: random.Random, count: int, make):
    seen, records = set(), []
    while len(records) < count:
        record = make(rng)
        if record is None or record["input"] in seen:
            continue
        seen.add(record["input"])
        records.append(record)
    return records


def gen_sum():
    def make(rng):
        digits_a, digits_b = rng.choice([(1, 2), (2, 2), (2, 3), (3, 3), (3, 2)])
        a = rng.randint(10 ** (digits_a - 1) + 1, 10**digits_a - 1)
        b = rng.randint(10 ** (digits_b - 1) + 1, 10**digits_b - 1)
        return {"input": f"{a} {b}", "output": str(a + b)}

    return _unique_pairs(random.Random(SEED + 1), 200, make)


def gen_difference():
    def make(rng):
        a = rng.randint(20, 999)
        b = rng.randint(2, a - 2)
        # The answer must differ from both operands, so that a reply that
        # merely repeats the input cannot score under the `contains` metric.
        if a - b in (a, b):
            return None
        return {"input": f"{a} {b}", "output": str(a - b)}

    return _unique_pairs(random.Random(SEED + 2), 200, make)


def gen_number_to_words():
    rng = random.Random(SEED + 3)
    numbers = set(rng.sample(range(1, 100), 40))
    numbers |= set(rng.sample(range(100, 1000), 110))
    numbers |= set(rng.sample(range(1000, 10000), 50))
    ordered = sorted(numbers)
    rng.shuffle(ordered)
    records = []
    for n in ordered:
        records.append(
            {
                "input": str(n),
                "output": _answer(number_to_words(n), number_to_words(n, use_and=True)),
            }
        )
    return records


def gen_word_sorting():
    rng = random.Random(SEED + 4)
    vocabulary = sorted(set(WORDS))

    def make(rng):
        words = rng.sample(vocabulary, rng.randint(3, 5))
        if words == sorted(words):  # never hand out an already sorted list
            return None
        return {"input": " ".join(words), "output": " ".join(sorted(words))}

    return _unique_pairs(rng, 200, make)


GENERATORS = {
    "first_letter": gen_first_letter,
    "second_letter": gen_second_letter,
    "last_letter": gen_last_letter,
    "uppercase": gen_uppercase,
    "letter_count": gen_letter_count,
    "sum": gen_sum,
    "difference": gen_difference,
    "number_to_words": gen_number_to_words,
    "word_sorting": gen_word_sorting,
}


def render(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def build_all() -> dict[str, str]:
    """Task name -> the exact text its data.jsonl must hold."""
    return {name: render(gen()) for name, gen in GENERATORS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in build_all().items():
        path = TASKS_DIR / name / "data.jsonl"
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO_ROOT)} ({text.count(chr(10))} examples)")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
