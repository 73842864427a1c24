"""The serial engine's lane loop: one item (a stream word's work) over W cycles, a lane a cycle.

docs/serial_engine.md, "Schedule": the parser (`zipml.hw.serial_parser.SerialParser`) issues
one *item* at a time: a grad plane word, a chunk's write-back, or a dot word. `LaneLoop` holds
the item and steps it through its W lanes; each lane becomes an *operation* that goes down the
lane pipeline L0..L4 (`lane_op`): the model RAM read (L0 address, L1 data), the lane's
operation in L2 (`zipml.hw.serial_update.SerialUpdate`, `zipml.hw.serial_dot.SerialDot`), the
write-back and the plane weight in L4.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, data, enum
from amaranth.lib.wiring import In, Out

from .dot import G
from .update import TERM_W

__all__ = ["Kind", "lane_item", "lane_op", "LaneLoop"]


class Kind(enum.Enum, shape=2):
    """What an item does (its phase in the parser's walk of a chunk)."""
    GRAD = 0     # a grad plane word: U_i += +-term for every lane
    WB = 1       # the write-back of a chunk (no stream word): X' = sat32(X - shrink - U >> G)
    DOT = 2      # a dot plane word: S = sum of +-X_i, then A_s += (S << G) >> sh(p)


def lane_item(W, C_MAX):
    """An item as the parser issues it: its kind and W-bit word (the stream's or the code
    buffer's), chunk ``k`` (``last_chunk``), group ``s``, plane ``p`` (``p_first``;
    ``p_carry``: the floor grid's carry plane), the chunk's first grad plane (``gfirst``: U
    restarts), the sample's first dot plane (``dstart``: A_s restarts) and last (``dfinal``),
    and ``nodot`` (floor mode 0's delta_grad, which adds nothing)."""
    return data.StructLayout({
        "kind": Kind, "word": W, "last_chunk": 1, "k": range(C_MAX), "s": 4, "p": 6,
        "p_first": 1, "p_carry": 1, "gfirst": 1, "dstart": 1, "dfinal": 1, "nodot": 1,
    })


def lane_op(D_MAX):
    """One lane of an item in the lane pipeline: its kind, the lane's bit of the word, the lane
    active, its first and last lane, model address ``addr`` = k*W + lane, and the item's
    ``gfirst``, ``p`` (sh(p) - 1), ``s``, ``dstart``, ``dfinal``."""
    return data.StructLayout({
        "valid": 1, "kind": Kind, "bit": 1, "active": 1, "first_lane": 1, "last_lane": 1,
        "gfirst": 1, "addr": range(D_MAX), "p": 6, "s": 4, "dstart": 1, "dfinal": 1,
    })


class LaneLoop(wiring.Component):
    """The item being executed, one lane a cycle, and the lane pipeline L0..L4.

    Parameters
    ----------
    W, D_MAX : int
        Lanes, model words (the engine's).

    Ports
    -----
    issue : In(1)
        Load ``item`` (the loop must be free: ``exec_free`` a cycle before).
    item : In(lane_item(W, D_MAX // W))
    t : In(signed(32))
        With ``issue``: T of the item's group (a grad item's term restarts from it at plane 0).
    last_mask : In(W)
        Active lanes of the pass's last chunk.
    clear : In(1)
        Stop the loop, empty the pipeline.
    busy : Out(1)
        An item is in the loop (lanes in L0).
    exec_free_next : Out(1)
        Comb: the next item may be decided in the next cycle (the loop's second-to-last lane,
        or idle), so it is loaded right after the last lane.
    exec_free : Out(1)
        ``exec_free_next`` registered.
    l0, l1, l2, l3, l4 : Out(lane_op(D_MAX))
        The lane operation in stages L0 (comb) .. L4.
    term : Out(signed(TERM_W))
        L2: the grad term ``(T << G) >> sh(p)`` of the lane's item.

    Latency: the item's lane 0 is in L0 the cycle after ``issue``, lane W-1 W cycles later.
    """

    def __init__(self, W, D_MAX):
        self.W, self.D_MAX = W, D_MAX
        op = lane_op(D_MAX)
        super().__init__({
            "issue": In(1), "item": In(lane_item(W, D_MAX // W)), "t": In(signed(32)),
            "last_mask": In(W), "clear": In(1),
            "busy": Out(1), "exec_free_next": Out(1), "exec_free": Out(1),
            "l0": Out(op), "l1": Out(op), "l2": Out(op), "l3": Out(op), "l4": Out(op),
            "term": Out(signed(TERM_W)),
        })

    def elaborate(self, platform):
        m = Module()
        W, item, busy = self.W, self.item, self.busy
        C_MAX = self.D_MAX // W
        lane = Signal(range(W))
        lane_last = Signal()                            # lane == W - 1
        e_kind = Signal(Kind)
        e_word = Signal(W)
        e_mask = Signal(W)
        e_k = Signal(range(C_MAX))
        e_p = Signal(6)
        e_s = Signal(4)
        e_term = Signal(signed(TERM_W))                 # (T << G) >> sh(p) of a grad item
        e_gfirst = Signal()                             # first grad plane of the chunk: U restarts
        e_dstart, e_dfinal = Signal(), Signal()
        e_nodot = Signal()                              # floor mode 0's delta_grad: adds nothing
        with m.If(self.issue):
            m.d.sync += [
                busy.eq(1), lane.eq(0), lane_last.eq(0), e_kind.eq(item.kind),
                e_word.eq(item.word),
                e_mask.eq(Mux(item.last_chunk, self.last_mask, (1 << W) - 1)),
                e_k.eq(item.k), e_s.eq(item.s), e_gfirst.eq(item.gfirst),
                # the planes of a group come in order, so each term is the last one halved
                # (a floor of a floor): no barrel shifter; the floor grid's carry plane keeps
                # the last plane's weight (sh(q) = q), its term and its shift sh - 1 in e_p
                e_term.eq(Mux(item.p_first, self.t << (G - 1),
                              Mux(item.p_carry, e_term, e_term >> 1))),
                e_p.eq(Mux(item.p_carry, e_p, item.p)),
                e_dstart.eq(item.dstart), e_dfinal.eq(item.dfinal), e_nodot.eq(item.nodot),
            ]
        with m.Elif(busy):
            m.d.sync += [lane.eq(lane + 1), e_word.eq(e_word >> 1), e_mask.eq(e_mask >> 1),
                         lane_last.eq(lane == W - 2)]
            with m.If(lane_last):
                m.d.sync += busy.eq(0)
        m.d.comb += self.exec_free_next.eq(Mux(self.issue, 0,
                                               ~busy | lane_last | (lane == W - 3)))
        m.d.sync += self.exec_free.eq(self.exec_free_next)

        l0 = self.l0
        m.d.comb += [
            l0.valid.eq(busy), l0.kind.eq(e_kind), l0.bit.eq(e_word[0]),
            l0.active.eq(e_mask[0] & ~e_nodot),
            l0.first_lane.eq(lane == 0), l0.last_lane.eq(lane_last), l0.gfirst.eq(e_gfirst),
            l0.addr.eq(Cat(lane, e_k)), l0.p.eq(e_p), l0.s.eq(e_s), l0.dstart.eq(e_dstart),
            l0.dfinal.eq(e_dfinal),
        ]
        ops = [self.l0, self.l1, self.l2, self.l3, self.l4]
        for a, b in zip(ops, ops[1:]):
            m.d.sync += b.eq(a)
        # the grad term of the lane's item, in L2
        term1 = Signal(signed(TERM_W))
        m.d.sync += [term1.eq(e_term), self.term.eq(term1)]

        with m.If(self.clear):
            m.d.sync += [busy.eq(0), lane_last.eq(0), self.exec_free.eq(1)]
            for op in ops[1:]:
                m.d.sync += op.valid.eq(0)
        return m
