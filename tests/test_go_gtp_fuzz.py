"""Fuzzing the GTP engine with random and mutated command lines: it answers every one, `= ...` or a one-line
`? ...`, never with a traceback or an internal error, and never hangs. In-process with hypothesis, then through
the `rl gtp` process with random bytes (invalid UTF-8 and control characters included)."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.go import play

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(play.random_engine(5, None, 0).commands())
VALID = [
    "boardsize 7", "clear_board", "komi 0.5", "play b D4", "play w pass", "genmove b", "genmove white", "undo",
    "fixed_handicap 4", "place_free_handicap 3", "set_free_handicap A1 B2", "time_settings 300 10 1",
    "time_left b 100 0", "final_score", "final_status_list dead", "kgs-genmove_cleanup w", "reg_genmove b",
    "loadsgf /dev/null 3", "is_legal b C3", "list_stones black", "showboard", "printsgf", "known_command play",
    "1 name", "2 protocol_version", "quit",
]  # fmt: skip
WORDS = [
    "b", "w", "black", "white", "W", "pass", "PASS", "resign", "A1", "e5", "J9", "T19", "Z1", "I3", "A0", "A99",
    "0", "1", "2", "5", "7", "9", "19", "25", "-1", "1e400", "nan", "inf", "-inf", "0.5", "7.5", "1_0", "alive",
    "dead", "seki", "/dev/null", "/dev/zero", "/", "x" * 300, "#", "\t", "\x00", "\x1b[2J", "é", "٣", "²",
]  # fmt: skip
ARGUMENT = st.one_of(st.sampled_from(WORDS), st.text(max_size=12), st.integers(-(10**6), 10**6).map(str))


def _mutate(line: str, where: int, how: int, char: str) -> str:
    """One edit of a valid line: a character deleted, inserted or replaced, or two words swapped."""
    i = where % (len(line) + 1)
    if how == 0:
        return line[:i] + line[i + 1 :]
    if how == 1:
        return line[:i] + char + line[i:]
    if how == 2:
        return line[:i] + char + line[i + 1 :]
    words = line.split(" ")
    return " ".join(words[::-1])


VERTEX = st.builds(lambda col, row: f"{col}{row}", st.sampled_from("ABCDEFGHJ"), st.integers(1, 9))
COLOUR = st.sampled_from(["b", "w", "black", "white"])
SENSIBLE = st.one_of(  # commands that mostly succeed, so that the games get somewhere
    st.sampled_from(VALID),
    st.builds(lambda who, where: f"play {who} {where}", COLOUR, VERTEX),
    st.builds(lambda name, who: f"{name} {who}", st.sampled_from(["genmove", "kgs-genmove_cleanup"]), COLOUR),
)
NOISE = st.one_of(
    st.builds(
        lambda ident, name, args: " ".join(([ident] if ident else []) + [name] + args),
        st.one_of(st.none(), st.integers(0, 10**12).map(str)),
        st.sampled_from(COMMANDS),
        st.lists(ARGUMENT, max_size=4),
    ),  # any command, any arguments
    st.builds(_mutate, st.sampled_from(VALID), st.integers(0, 200), st.integers(0, 3), st.characters()),
    st.text(max_size=60),
)
LINE = st.one_of(SENSIBLE, NOISE)
ANSWER = re.compile(r"\?\d* [^\n]+\n\n|=\d*( [^\n]*)?(\n[^\n]+)*\n\n")  # `?` answers are one line, `=` ones no blank


@contextmanager
def time_limit(seconds: int):
    def hang(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def blank(line: str) -> bool:
    """Nothing left after GTP's preprocessing (control characters, then the comment, removed)."""
    return not re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "", line).split("#", 1)[0].split()


@settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(LINE, min_size=1, max_size=30))
def test_the_engine_answers_every_command(lines):
    engine = play.random_engine(5, None, 0)
    for line in lines:
        with time_limit(60):
            answer = engine.handle(line)
        if answer is None:
            assert blank(line), repr(line)
            continue
        assert ANSWER.fullmatch(answer), (line, answer)
        assert "internal error" not in answer and "Traceback" not in answer, (line, answer)


def test_the_rl_gtp_process_answers_random_bytes_in_order():
    """300 lines of random bytes and mutated commands, each after an id: the answers come back one per line, in
    order (ids 0..299), then `quit` ends the process cleanly with nothing on stderr."""
    rng = random.Random(0)
    alphabet = bytes(b for b in range(256) if b not in b"\r\n")
    lines = []
    for i in range(300):
        kind = rng.randrange(3)
        if kind == 0:
            body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        elif kind == 1:
            body = _mutate(
                rng.choice(VALID), rng.randrange(40), rng.randrange(4), chr(rng.randrange(1, 0x250))
            ).encode()
        else:
            body = f"{rng.choice(COMMANDS)} {' '.join(rng.choices(WORDS, k=rng.randrange(4)))}".encode()
        body = body.replace(b"\r", b"").replace(b"\n", b"")
        if b"quit" in body.lower():  # the one command after which nothing is answered
            body = b"name"
        lines.append(f"{1000 + i} ".encode() + body)
    process = subprocess.run(
        [sys.executable, "-m", "agents.cli", "gtp", "--size", "5"],
        input=b"\n".join(lines) + b"\nquit\n",
        capture_output=True,
        timeout=600,
        cwd=ROOT,
    )
    assert process.returncode == 0 and process.stderr == b"", process.stderr.decode(errors="replace")[-2000:]
    answers = process.stdout.decode().split("\n\n")[:-1]
    assert [re.match(r"[=?](\d+)", a).group(1) for a in answers[:-1]] == [str(1000 + i) for i in range(300)]
    assert answers[-1] == "=" and all(ANSWER.fullmatch(a + "\n\n") for a in answers)
    assert not any("internal error" in a for a in answers)
