"""The controller side of GTP v2: a client that drives an external engine (GNU Go) over pipes, used by the GNU Go
opponent, the referee script and the cross-check tests."""

from __future__ import annotations

import shlex
import subprocess

from envs.go.gtp import GtpError

GNUGO = "/usr/games/gnugo"


class GtpClient:
    """Drives an external GTP engine (GNU Go) over pipes: `send(cmd)` returns the answer text or
    raises GtpError with the engine's `?` message."""

    def __init__(self, command: list[str] | str):
        argv = shlex.split(command) if isinstance(command, str) else command
        # its own session: a Ctrl-C in the terminal (SIGINT to the foreground group) must reach only us, so that a
        # training run stopped during an evaluation against GNU Go finishes its games and checkpoints instead of
        # losing the engine
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True
            )
        except OSError as error:  # no such program, or not executable
            raise GtpError(f"cannot start the GTP engine {shlex.join(argv)!r}: {error.strerror}") from None

    def send(self, command: str) -> str:
        return self.send_many([command])[0]

    def send_many(self, commands: list[str]) -> list[str]:
        """Pipeline several commands (one write, then read every answer)."""
        try:
            self.process.stdin.write("".join(c + "\n" for c in commands))
            self.process.stdin.flush()
        except BrokenPipeError:
            raise GtpError(f"engine exited before {commands!r}") from None
        answers = []
        for _ in commands:
            lines = []
            while True:
                line = self.process.stdout.readline()
                if not line:
                    raise GtpError(f"engine exited during {commands!r}")
                if line == "\n" and lines:
                    break
                if line != "\n":
                    lines.append(line.rstrip("\n"))
            head, rest = lines[0], lines[1:]
            text = "\n".join([head[1:].strip(), *rest]).strip()
            if head.startswith("?"):
                raise GtpError(text)
            answers.append(text)
        return answers

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def gnugo(size: int, komi: float, level: int = 1, seed: int = 0) -> GtpClient:
    """GNU Go under our rules: area scoring, positional superko, no suicide (its default). With
    --capture-all-dead it removes dead stones by capturing them before it passes, as Tromp-Taylor scoring
    (which counts every stone on the board as alive) needs; without it GNU Go passes in won positions
    that Tromp-Taylor scores as lost."""
    return engine(
        [
            GNUGO,
            "--mode",
            "gtp",
            "--chinese-rules",
            "--positional-superko",
            "--capture-all-dead",
            "--level",
            str(level),
            "--seed",
            str(seed),
            "--komi",
            str(komi),
        ],
        size,
        komi,
    )


def engine(command: list[str] | str, size: int, komi: float) -> GtpClient:
    """Any GTP engine by command line, set to an empty `size` board and `komi`; a GtpError names the engine when it
    cannot start or refuses the board size."""
    client = GtpClient(command)
    try:
        client.send_many([f"boardsize {size}", "clear_board", f"komi {komi}"])
    except GtpError as error:
        client.close()
        name = command if isinstance(command, str) else shlex.join(command)
        raise GtpError(f"the GTP engine {name!r} refused a {size}x{size} board with komi {komi}: {error}") from None
    return client
