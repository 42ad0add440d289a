"""Go rules as pure functions of batched torch tensors: B games at once, on CPU or CUDA.

Rules (Tromp-Taylor with suicide illegal and positional superko):
- Board N x N for N in 5..19; action a in 0..N*N-1 is point (row, col) = divmod(a, N), row 0 at the
  top; action N*N is pass. Black (+1) moves first, White is -1, empty 0.
- A stone on an empty point first removes the opponent groups it leaves without liberties, then the
  mover's own group must have a liberty: suicide is illegal.
- Positional superko: a move is illegal if the board after it (stones only, whoever is to move)
  equals any earlier board of the game. Like Tromp-Taylor's rules this *masks* the repeating move
  (it never appears in `legal_action_mask`); it does not make the mover lose (Pgx's compromise).
  Simple ko is the one-move case. Pass is always legal.
- Two passes in a row end the game, and so does the cap of 2*N*N moves (passes included); both end
  it by scoring, so `done` covers both (`reopened` lifts both for GTP, where the controller ends a game).
- Tromp-Taylor area score: stones plus the empty points that reach only that colour; komi to White.

Design for speed (no Python loop over games; neighbours are shifted views of a padded board):
- `labels` give each stone its group's id, L = 1 + the index of one of its stones (0 = empty), so a
  per-group array indexed by L is also indexed by point: the colour of group L is board[L-1]. A move
  never splits a group, so labels are kept incrementally: the stone joins the friendly groups it
  touches under their largest label, captured groups are removed whole. No flood fill during play.
- Liberties by the pseudo-liberty trick: each group sums, over its stones' empty neighbours p (with
  repeats), 1, p+1 and (p+1)^2, packed in one int64 and summed with one scatter_add. A group is in
  atari exactly when count * sum_of_squares == sum^2 (all its pseudo-liberties are one point), and
  then that point is sum / count - 1. So captures need no de-duplication of neighbouring groups.
- Zobrist hashing (Zobrist 1970) with *additive* keys: a board's hash is the sum of one random key
  below 2**53 per (colour, point) stone, so no sum overflows int64. Sums (unlike xor) have a batched
  scatter, so each candidate move's hash, captures included, is hash + key - captured keys, and
  superko is a batched searchsorted of the candidates in the sorted hashes of past boards.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

BLACK, WHITE, EMPTY = 1, -1, 0
_OFF = 2  # colour of the off-board border
_UNUSED = torch.iinfo(torch.int64).max  # history slots not yet played sort last and match no hash
_KEY_SEED = 20021102


def default_komi(size: int) -> float:
    """7.5 (Chinese and Tromp-Taylor custom) except on the solved small boards, where komi is the
    perfect-play margin minus half a point, so Black still wins by 0.5 with perfect play:
    5x5 is Black by 25 (van der Werf et al. 2003) -> 24.5; 7x7 by 9 -> 8.5."""
    return {5: 24.5, 7: 8.5}.get(size, 7.5)


@dataclass(frozen=True)
class GoState:
    """B games; every field is a tensor with the batch first (A = N*N)."""

    board: torch.Tensor  # (B, A) int8: +1 black, -1 white, 0 empty
    labels: torch.Tensor  # (B, A) int64: group id = 1 + index of one of its stones; 0 on empty points
    atari_at: torch.Tensor  # (B, A+1) int64: for group L in atari, 1 + its one liberty; else 0
    capture_keys: torch.Tensor  # (B, A) int64: key sum of the stones a move of `turn` there captures
    turn: torch.Tensor  # (B,) int8: colour to move
    passes: torch.Tensor  # (B,) int64: consecutive passes just played
    moves: torch.Tensor  # (B,) int64: moves played (since `reopened`), passes included
    hash: torch.Tensor  # (B,) int64: additive Zobrist hash of the board
    history: torch.Tensor  # (B, 2*A+1, wider after `reopened`) int64: hashes of the boards so far, sorted; unused = max
    legal: torch.Tensor  # (B, A+1) bool: legal actions of the player to move
    done: torch.Tensor  # (B,) bool: ended by two passes or the move cap

    @property
    def size(self) -> int:
        return round(self.board.shape[1] ** 0.5)

    def index(self, rows: torch.Tensor | slice | int) -> "GoState":
        """The games at `rows` (a bool mask, an index tensor, a slice; an int keeps a batch of 1)."""
        rows = slice(rows, rows + 1) if isinstance(rows, int) else rows
        return GoState(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def where(self, rows: torch.Tensor, other: "GoState") -> "GoState":
        """Games from `other` (batch B or 1) where rows (B,) is True, from self elsewhere."""

        def pick(mine, theirs):
            return torch.where(rows.view(-1, *([1] * (mine.dim() - 1))), theirs, mine)

        return GoState(**{f.name: pick(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> "GoState":
        return GoState(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class _Tables:
    """Per (size, device) constants: neighbour indices, packed pseudo-liberty terms, Zobrist keys."""

    def __init__(self, size: int, device: torch.device):
        A = size * size
        rows, cols = torch.arange(A) // size, torch.arange(A) % size
        neighbours = []
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            neighbours.append(torch.where(inside, r * size + c, A))  # A = off the board
        self.nbr = torch.stack(neighbours, 1).to(device)  # (A, 4)
        p1 = torch.arange(1, A + 1, dtype=torch.int64)
        # count < 2**11, sum < 2**20, sum of squares < 2**28 for any group on a 19x19 board
        self.pack = (1 + (p1 << 11) + (p1 * p1 << 31)).to(device)  # (A,)
        generator = torch.Generator().manual_seed(_KEY_SEED + size)
        self.keys = torch.randint(1, 2**53, (2, A), generator=generator).to(device)  # row 0 black, 1 white
        self.points1 = p1.to(device)  # (A,) 1 + point index
        self.group_ids = torch.arange(A + 1, device=device)  # (A+1,)
        self.slots = torch.arange(2 * A + 1, device=device).view(1, -1)  # (1, 2A+1) history columns


_TABLES: dict[tuple[int, str], _Tables] = {}


def _tables(size: int, device: torch.device) -> _Tables:
    key = (size, str(device))
    if key not in _TABLES:
        _TABLES[key] = _Tables(size, device)
    return _TABLES[key]


def _neighbours(x: torch.Tensor, size: int, border) -> tuple[torch.Tensor, ...]:
    """The up, down, left and right neighbour of every point as 4 views (B, N, N) of x (B, A)."""
    p = F.pad(x.view(-1, size, size), (1, 1, 1, 1), value=border)
    return p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]


def _stone_keys(board: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Zobrist key of the stone on each point, 0 where empty: (B, A) int64."""
    return torch.where(board == BLACK, keys[0], torch.where(board == WHITE, keys[1], 0))


def _analyse(board, labels, turn, hash_, history, size):
    """Atari liberties, capture keys and legal actions of `turn`: (B, A+1), (B, A), (B, A+1)."""
    t = _tables(size, board.device)
    B, A = board.shape
    empty = board == EMPTY
    up, down, left, right = _neighbours(torch.where(empty, t.pack, 0), size, 0)
    packed = torch.zeros(B, A + 1, dtype=torch.int64, device=board.device)
    packed.scatter_add_(1, labels, (up + down + left + right).reshape(B, A))  # [:, 0] collects empties
    count, total, squares = packed & 2047, (packed >> 11) & (2**20 - 1), packed >> 31
    atari = (count > 0) & (total * total == count * squares)
    atari[:, 0] = False
    atari_at = torch.where(atari, total // count.clamp(min=1), 0)  # (B, A+1): 1 + the liberty
    group_colour = F.pad(board, (1, 0))  # (B, A+1): group L's colour is board[L-1]
    mover = turn.view(B, 1)
    group_keys = torch.zeros(B, A + 1, dtype=torch.int64, device=board.device)
    group_keys.scatter_add_(1, labels, _stone_keys(board, t.keys))
    taken = torch.zeros(B, A + 1, dtype=torch.int64, device=board.device)
    taken.scatter_add_(1, torch.where(atari & (group_colour == -mover), atari_at, 0), group_keys)
    capture_keys = taken[:, 1:]  # (B, A)
    safe = (count > 0) & ~atari & (group_colour == mover)  # own groups with 2+ liberties
    safe[:, 0] = False
    breathing = empty | safe.gather(1, labels)  # a stone here would have a liberty through this point
    up, down, left, right = _neighbours(breathing, size, False)
    legal = empty & ((up | down | left | right).reshape(B, A) | (capture_keys != 0))
    candidate = hash_.view(B, 1) + torch.where(mover == BLACK, t.keys[0], t.keys[1]) - capture_keys
    seen = torch.searchsorted(history, candidate).clamp_(max=history.shape[1] - 1)
    legal &= history.gather(1, seen) != candidate  # positional superko
    return atari_at, capture_keys, torch.cat([legal, legal.new_ones(B, 1)], 1)


def label_groups(board: torch.Tensor, size: int) -> torch.Tensor:
    """Group labels from scratch (B, A) -> (B, A): for set-up positions and as a test oracle.

    Connected-component labelling by max-propagation between same-coloured neighbours plus pointer
    jumping (label L names point L-1, whose label is at least L), until nothing changes."""
    t = _tables(size, board.device)
    labels = torch.where(board != EMPTY, t.points1, 0)
    same = [view == board.view(-1, size, size) for view in _neighbours(board, size, _OFF)]
    while True:
        grown = labels.view(-1, size, size).clone()
        for is_same, view in zip(same, _neighbours(labels, size, 0)):
            grown = torch.where(is_same, grown.maximum(view), grown)
        grown = grown.reshape(labels.shape)
        grown = torch.where(grown > 0, grown.gather(1, (grown - 1).clamp(min=0)), 0)
        if torch.equal(grown, labels):
            return labels
        labels = grown


def from_boards(board: torch.Tensor, turn: int | torch.Tensor = BLACK) -> GoState:
    """Games starting from the given boards (B, A) int8, `turn` to move; history is this board only."""
    B, A = board.shape
    size = round(A**0.5)
    if size * size != A or not 5 <= size <= 19:
        raise ValueError(f"board size must be 5..19, got {A} points")
    t = _tables(size, board.device)
    board = board.to(torch.int8)
    turn = torch.as_tensor(turn, dtype=torch.int8, device=board.device).expand(B).clone()
    labels = label_groups(board, size)
    hash_ = _stone_keys(board, t.keys).sum(1)
    history = torch.full((B, 2 * A + 1), _UNUSED, dtype=torch.int64, device=board.device)
    history[:, 0] = hash_
    zeros = torch.zeros(B, dtype=torch.int64, device=board.device)
    atari_at, capture_keys, legal = _analyse(board, labels, turn, hash_, history, size)
    return GoState(
        board,
        labels,
        atari_at,
        capture_keys,
        turn,
        zeros,
        zeros.clone(),
        hash_,
        history,
        legal,
        torch.zeros(B, dtype=torch.bool, device=board.device),
    )


def new_games(batch: int, size: int, device: torch.device | str = "cpu") -> GoState:
    """B empty boards, Black to move."""
    return from_boards(torch.zeros(batch, size * size, dtype=torch.int8, device=device))


def with_turn(state: GoState, turn: int) -> GoState:
    """The same games with `turn` to move (GTP lets either colour play); legality recomputed."""
    turn = torch.full_like(state.turn, turn)
    atari_at, capture_keys, legal = _analyse(state.board, state.labels, turn, state.hash, state.history, state.size)
    return GoState(
        state.board,
        state.labels,
        atari_at,
        capture_keys,
        turn,
        state.passes,
        state.moves,
        state.hash,
        state.history,
        legal,
        state.done,
    )


def reopened(state: GoState) -> GoState:
    """The same games not over, with 2*N*N more moves before the cap: for GTP, where a game ends when the controller
    says so, not at two passes or the cap. The move count restarts and the history widens to hold that many more
    boards, so superko still sees every earlier board."""
    A = state.board.shape[1]
    free = int((state.history == _UNUSED).sum(1).min())  # the fullest game's unused slots
    unused = torch.full((state.history.shape[0], max(0, 2 * A + 1 - free)), _UNUSED, device=state.history.device)
    history = torch.cat([state.history, unused], 1)  # (F.pad's float fill value cannot hold int64 max)
    return replace(state, moves=torch.zeros_like(state.moves), history=history, done=torch.zeros_like(state.done))


def legal_action_mask(state: GoState) -> torch.Tensor:
    """(B, A+1) bool: the legal actions of the player to move (pass always legal)."""
    return state.legal


def step(state: GoState, action: torch.Tensor) -> GoState:
    """Play one action (B,) int64 in every game; actions must be legal (see `legal_action_mask`).

    Games already over are left unchanged. Returns a new state; the input is not modified."""
    board, labels, turn = state.board, state.labels, state.turn
    B, A = board.shape
    size = state.size
    t = _tables(size, board.device)
    active = ~state.done
    play = (action < A) & active  # (B,) a stone is placed
    at = action.clamp(max=A - 1).view(B, 1)
    nbr = t.nbr[at.view(B)]  # (B, 4)
    own = (F.pad(board, (0, 1), value=_OFF).gather(1, nbr) == turn.view(B, 1)) & play.view(B, 1)
    own_labels = torch.where(own, F.pad(labels, (0, 1)).gather(1, nbr), 0)  # (B, 4)
    new_label = own_labels.amax(1, keepdim=True).maximum(at + 1)  # (B, 1)
    # Relabel through a per-group map: captured groups -> 0, merged groups -> new_label.
    captured = (state.atari_at == at + 1) & (F.pad(board, (1, 0)) == -turn.view(B, 1)) & play.view(B, 1)
    relabel = torch.where(captured, 0, t.group_ids)  # (B, A+1)
    relabel.scatter_(1, own_labels, new_label.expand(B, 4))
    relabel[:, 0] = 0
    labels = relabel.gather(1, labels)
    labels.scatter_(1, at, torch.where(play.view(B, 1), new_label, labels.gather(1, at)))
    board = torch.where(labels == 0, 0, board).to(torch.int8)  # captured stones leave
    board.scatter_(1, at, torch.where(play.view(B, 1), turn.view(B, 1), board.gather(1, at)))
    key = torch.where(turn.view(B, 1) == BLACK, t.keys[0][at], t.keys[1][at])  # (B, 1)
    hash_ = state.hash + torch.where(play, (key - state.capture_keys.gather(1, at)).view(B), 0)
    moves = state.moves + active.long()
    passes = torch.where(play, 0, state.passes + active.long())
    # Insert the new hash into the sorted history (the last slot, unused, drops off).
    history = state.history
    slots = t.slots if history.shape[1] == t.slots.shape[1] else torch.arange(history.shape[1], device=board.device)
    slot = torch.searchsorted(history, hash_.view(B, 1))  # (B, 1)
    shifted = F.pad(history, (1, 0))[:, :-1]
    inserted = torch.where(slots < slot, history, torch.where(slots == slot, hash_.view(B, 1), shifted))
    history = torch.where(active.view(B, 1), inserted, history)
    turn = torch.where(active, -turn, turn)
    done = state.done | (passes >= 2) | (moves >= 2 * A)
    atari_at, capture_keys, legal = _analyse(board, labels, turn, hash_, history, size)
    return GoState(board, labels, atari_at, capture_keys, turn, passes, moves, hash_, history, legal, done)


def ownership(board: torch.Tensor, size: int) -> torch.Tensor:
    """(B, A) int8: who owns each point by Tromp-Taylor area, +1 Black, -1 White, 0 nobody: a stone's colour, or
    for an empty point the one colour whose stones it reaches, found by repeated dilation through empty points."""
    empty = (board == EMPTY).repeat(2, 1).view(-1, size, size)  # (2B, N, N)
    reach = torch.cat([board == BLACK, board == WHITE]).view(-1, size, size)  # black rows, then white
    while True:
        up, down, left, right = _neighbours(reach, size, False)
        grown = reach | (empty & (up | down | left | right))
        if torch.equal(grown, reach):
            break
        reach = grown
    black_reach, white_reach = reach.view(2, *board.shape).unbind(0)
    black = (board == BLACK) | (black_reach & ~white_reach)
    white = (board == WHITE) | (white_reach & ~black_reach)
    return black.to(torch.int8) - white.to(torch.int8)


def area(board: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tromp-Taylor area of Black and of White, (B,) each: stones plus the empty points only that colour reaches."""
    owner = ownership(board, size)
    return (owner == BLACK).sum(1), (owner == WHITE).sum(1)


def score(state: GoState, komi: float) -> torch.Tensor:
    """Black's area minus White's area minus komi, (B,) float32: > 0 means Black wins."""
    black, white = area(state.board, state.size)
    return (black - white).float() - komi


def capture_counts(state: GoState) -> torch.Tensor:
    """(B, A) int64: how many stones a move of the player to move on each point would capture (the opponent
    groups in atari whose one liberty it is; 0 elsewhere, legal or not)."""
    B, A = state.board.shape
    sizes = torch.zeros(B, A + 1, dtype=torch.int64, device=state.board.device)
    sizes.scatter_add_(1, state.labels, torch.ones_like(state.labels))  # group L's size at L ([:, 0]: empties)
    victims = (state.atari_at > 0) & (F.pad(state.board, (1, 0)) == -state.turn.view(B, 1))
    victims[:, 0] = False
    counts = torch.zeros_like(sizes)
    counts.scatter_add_(1, torch.where(victims, state.atari_at, 0), torch.where(victims, sizes, 0))
    return counts[:, 1:]  # atari_at is 1 + the liberty: column p + 1 holds point p


def own_eyes(state: GoState) -> torch.Tensor:
    """(B, A) bool: the empty points whose four neighbours are all the mover's stones or the board's edge (one-point
    eyes, false eyes included: Monte-Carlo Go's playout rule, Bruegmann 1993, which never fills them)."""
    B, A = state.board.shape
    mover = state.turn.view(B, 1, 1)
    up, down, left, right = ((v == mover) | (v == _OFF) for v in _neighbours(state.board, state.size, _OFF))
    return (up & down & left & right).reshape(B, A) & (state.board == EMPTY)


def random_policy(state: GoState, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform over legal moves that do not fill one of the mover's own one-point eyes; pass only
    when nothing else is left (the usual random playout policy, so random games end). (B,) int64."""
    B, A = state.board.shape
    weights = (state.legal[:, :A] & ~own_eyes(state)).float()
    weights = torch.cat([weights, (weights.sum(1, keepdim=True) == 0).float()], 1)
    return torch.multinomial(weights, 1, generator=generator).view(B)
