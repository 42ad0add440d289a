"""SGF records: our writer read back, what real files hold (set-up stones, handicap, variations, comments, other
encodings, passes as tt), the errors that name what cannot be used, and `loadsgf FILE [N]` on records GNU Go wrote,
checked position by position against GNU Go's own loadsgf."""

from __future__ import annotations

import os
import subprocess

import pytest

from envs.go import game, gtp, gtp_client, play, sgf

HAVE_GNUGO = os.access(gtp_client.GNUGO, os.X_OK)
B, W = game.BLACK, game.WHITE


def test_our_records_read_back_with_setup_handicap_and_names():
    moves = [(W, 12), (B, 7), (W, 25), (B, 0)]
    setup = [(B, 6), (B, 18), (W, 24)]
    text = sgf.write(5, 0.5, moves, "B+2.5", black="me", white="you] \\", setup=setup, handicap=2)
    record = sgf.read(text)
    assert (record.size, record.komi, record.moves, record.result) == (5, 0.5, moves, "B+2.5")
    assert (record.setup, record.handicap, record.to_play, record.black, record.white) == (setup, 2, W, "me", "you] \\")
    assert sgf.read(text.replace(";W[]", ";W[tt]")).moves == moves  # a pass written the FF[3] way


# A record as servers and editors write them: FF[3]-style header over several lines, handicap stones, comments
# holding SGF's own characters, a pass as tt, variations (the main line is the first at each branch).
REAL = r"""
(;GM[1]FF[3]CA[UTF-8]
SZ[9]KM[0.50]HA[2]RU[Japanese]
PB[Kuro]PW[Shiro]RE[W+12.5]DT[2024-05-01]
AB[gc][cg]
C[Handicap game: a comment with an escaped \] and (brackets) ;semicolons]
;W[ee]C[move 1]
;B[ge]
(;W[tt]
;B[ce]LB[ce:A]
(;W[])
(;W[dd]))
(;W[gg];B[ff]))
"""


def test_a_real_record_gives_its_handicap_stones_and_main_line():
    record = sgf.read(REAL)
    assert (record.size, record.komi, record.handicap, record.rules, record.result) == (9, 0.5, 2, "Japanese", "W+12.5")
    assert record.setup == [(B, 24), (B, 56)]  # gc = G7, cg = C3
    assert record.to_play == W  # handicap stones and no PL: White moves first
    assert record.moves == [(W, 40), (B, 42), (W, 81), (B, 38), (W, 81)]
    assert (record.black, record.white) == ("Kuro", "Shiro")


@pytest.mark.parametrize(
    "data,name",
    [
        ("(;GM[1]SZ[9]CA[GB2312]PB[李昌镐];B[aa])".encode("gb2312"), "李昌镐"),
        ("(;GM[1]SZ[9]PB[Müller];B[aa])".encode("latin-1"), "Müller"),  # no CA: ISO-8859-1 (SGF's default)
        ("(;GM[1]SZ[9]CA[UTF-8]PB[本因坊秀策];B[aa])".encode(), "本因坊秀策"),
        ("(;GM[1]SZ[9]CA[Shift_JIS]PB[秀策];B[aa])".encode("shift_jis"), "秀策"),
    ],
)
def test_records_in_other_encodings(data, name):
    record = sgf.read(data)
    assert record.black == name and record.moves == [(B, 0)]


def test_who_moves_first():
    assert sgf.read("(;SZ[9]HA[2]AB[cc][gg]PL[B])").to_play == B  # PL says so
    assert sgf.read("(;SZ[9]AB[cc]AW[gg])").to_play == B  # set-up of both colours, no PL: Black
    assert sgf.read("(;SZ[9];W[cc])").to_play == W  # the first move's colour
    assert sgf.read("(;SZ[9]AB[cc][gg])").to_play == W  # handicap stones alone: White


def test_setup_in_a_node_before_the_first_move_counts_and_a_collection_gives_its_first_game():
    record = sgf.read("(;SZ[9];AB[cc]AW[dd];AE[dd]AB[ee];W[ff])(;SZ[5];B[aa])")
    assert record.size == 9 and record.setup == [(B, 20), (B, 40)] and record.moves == [(W, 50)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("(;GM[1]SZ[25])", "SZ[25]"),
        ("(;GM[1]SZ[3])", "SZ[3]"),
        ("(;GM[2]SZ[9])", "GM[2]"),
        ("no game here", "not a readable SGF game"),
        ("(;SZ[9]KM[x])", "KM[x]"),
        ("(;SZ[9]HA[many])", "HA[many]"),
        ("(;SZ[9];B[zz])", "node 1"),
        ("(;SZ[9];B[cc];B[abc])", "node 2"),
        ("(;SZ[9];B[cc];AB[dd])", "after the first move"),
        ("(;SZ[5]AB[aa]AW[ab][ba])", "without a liberty"),
        ("(;SZ[9];B[cc]", "not a readable SGF game"),
        (b"(;SZ[9]CA[nonsense];B[cc])", "unknown encoding: nonsense"),
    ],
)
def test_what_cannot_be_used_is_named(text, message):
    with pytest.raises(sgf.SgfError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sgf.read(text)


def session(engine: gtp.Engine, *commands: str) -> list[str]:
    return [engine.handle(c).strip() for c in commands]


def test_loadsgf_reads_a_position_and_leaves_the_engine_as_it_was_on_a_bad_file(tmp_path):
    good, bad = tmp_path / "real.sgf", tmp_path / "suicide.sgf"
    good.write_text(REAL)
    bad.write_text("(;SZ[5]KM[2.5];B[ab];W[bb];B[ba];W[tt];B[ca];W[aa])")  # W[aa] is suicide: no liberty
    engine = play.random_engine(5, None, 0)
    assert session(engine, f"loadsgf {good} 2", "list_stones black", "list_stones white") == [
        "= black",
        "= G7 C3",
        "= E5",
    ]
    assert engine.komi == 0.5 and engine.size == 9 and engine.handicap == 2
    answer = engine.handle(f"loadsgf {bad}")
    assert answer.startswith(f"? cannot load file '{bad}': move 6 (W A5) is illegal")
    assert session(engine, "list_stones black", "list_stones white") == ["= G7 C3", "= E5"] and engine.size == 9
    assert session(engine, f"loadsgf {bad} 6", "list_stones white") == ["= white", "= B4"]


def gnugo_record(path, seed: int) -> None:
    """A game GNU Go plays against itself (benchmark mode): random opening moves with comments, passes as B[]."""
    argv = [gtp_client.GNUGO, "--benchmark", "200", "--boardsize", "9", "--level", "1"]
    argv += ["--seed", str(seed), "-o", str(path)]
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=120, check=True)


def stones(answer: str) -> set[str]:
    return set(answer.lstrip("= ").split())


@pytest.mark.skipif(not HAVE_GNUGO, reason="GNU Go not installed (apt-get install gnugo)")
def test_loadsgf_agrees_with_gnugo_on_records_gnugo_wrote(tmp_path):
    """Whole games and GNU Go's printsgf of a handicap position (set-up stones of both colours, PL[W]): after
    `loadsgf FILE N` both engines have the same stones and the same colour to move."""
    reference = gtp_client.gnugo(9, 0.5)
    files = []
    for seed in (1, 2):
        files.append(tmp_path / f"game{seed}.sgf")
        gnugo_record(files[-1], seed)
    reference.send_many(["fixed_handicap 3", "genmove w", "genmove b", "genmove w", "genmove b"])
    files.append(tmp_path / "position.sgf")
    files[-1].write_text(reference.send("printsgf"))
    engine = play.random_engine(9, None, 0)
    checked = 0
    try:
        for path in files:
            moves = len(sgf.read(path.read_bytes()).moves)
            for upto in sorted({0, 1, 2, moves // 2, moves, moves + 1}):
                theirs = reference.send(f"loadsgf {path} {upto}")
                assert engine.handle(f"loadsgf {path} {upto}").strip() == f"= {theirs}", (path, upto)
                for who in ("black", "white"):
                    assert stones(engine.handle(f"list_stones {who}")) == stones(reference.send(f"list_stones {who}"))
                checked += 1
            assert engine.handle(f"loadsgf {path}").strip() == f"= {reference.send(f'loadsgf {path}')}"
    finally:
        reference.close()
    assert checked >= 12 and engine.handicap == 3 and len(engine.setup) == 7
