"""The board system's replay: the sample store read out, epoch after epoch, into the store feed.

REPLAY (docs/link.md) feeds the store's first ``store_len`` words to the engine ``epochs``
times, through the store feed (`zipml.hw.store_feed.StoreFeed`) and the skid buffer
(`zipml.hw.skid.SkidBuffer`). `Replay` issues the store reads, lands the words, counts the
epochs (register ``replay_done``) and times the replay (``replay_cycles``); it also owns the
sample store's single port, which the command unit's STORE writes take while no replay reads.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from . import protocol as P

__all__ = ["Replay"]


class Replay(wiring.Component):
    """Store reads, landing registers, epoch count and timing of a replay.

    Parameters
    ----------
    W : int
        Word width (the store's and the engine's).
    depth : int
        Sample store words (``STORE_DEPTH``).
    len_bits : int
        Width of the ``store_len`` register (`zipml.hw.registers.RegisterFile`).

    Ports
    -----
    start : In(1)
        Strobe (a registered pulse): start a replay of ``epochs`` epochs of ``store_len``
        words.
    stop : In(1)
        Strobe (a registered pulse): end the replay; the words on their way are dropped.
    epochs : In(16)
        REPLAY's payload, held until the next command.
    store_len : In(len_bits)
        Words per epoch, at most ``depth`` when a replay starts (and not written while one
        runs).
    wr : In(1)
        A STORE word is written this clock (a registered request): it takes the store's port,
        and no read is issued.
    wr_addr : In(range(depth)), wr_data : In(W)
        The word and its address.
    addr : Out(range(depth)), wdata : Out(W), we : Out(1), re : Out(1)
    rdata : In(W)
        The sample store's port (`zipml.hw.soc.SampleStore`): a word is taken from ``rdata``
        the clock after its read.
    o_stream : Out(stream.Signature(W))
        The landed words, to the store feed: the payload is a flip-flop, ``valid`` a compare
        of a two-bit count.
    feed_busy : In(1)
        The store feed holds a word or a carry to emit: the replay is not over.
    idle : In(1)
        The engine is idle and no word waits for it: with the replay not busy, its time ends.
    busy : Out(1)
        Epochs left, a read in flight, a landed word, or ``feed_busy`` (comb).
    replay_done : Out(16)
        Epochs fed by the current replay.
    replay_cycles : Out(32)
        Clocks from ``start`` until the replay is not busy and ``idle``.

    Throughput: one store word a clock while the feed takes one a clock. Latency: a read's
    word lands the clock after it; the epoch count follows the epoch's last read a clock later.
    """

    def __init__(self, W, depth, len_bits):
        self.W, self.depth, self.len_bits = W, depth, len_bits
        super().__init__({
            "start": In(1), "stop": In(1), "epochs": In(16), "store_len": In(len_bits),
            "wr": In(1), "wr_addr": In(range(depth)), "wr_data": In(W),
            "addr": Out(range(depth)), "wdata": Out(W), "we": Out(1), "re": Out(1),
            "rdata": In(W),
            "o_stream": Out(stream.Signature(W)),
            "feed_busy": In(1), "idle": In(1), "busy": Out(1),
            "replay_done": Out(P.REGISTER_BY_NAME["replay_done"].width),
            "replay_cycles": Out(P.REGISTER_BY_NAME["replay_cycles"].width),
        })

    def elaborate(self, platform):
        m = Module()
        sbits = self.depth.bit_length()
        start, stop, store_len = self.start, self.stop, self.store_len
        replay_done, replay_cycles = self.replay_done, self.replay_cycles
        replay_left = Signal(16)    # epochs still to feed, the current one included
        # Flags kept beside the counters they describe, so the replay's per-word decision is a
        # few flip-flops, not a compare of the counters.
        replay_more = Signal()      # replay_left != 0
        last_epoch = Signal()       # replay_left == 1
        epoch_end = Signal()        # the epoch's last word was read last clock (count it now)
        at_last = Signal()          # rptr is the epoch's last word: rptr + 1 == store_len
        # store_len - 2, loaded at each epoch's start: rptr equal to it (a compare of two
        # registers) says that the next word is the last.
        len_m2 = Signal(sbits)
        replay_timing = Signal()    # REPLAY started, store or engine not yet done
        rptr = Signal(range(self.depth))
        # A store word lands, the clock after its read, in one of two registers: `head`, the
        # word the store feed sees (a flip-flop, nothing between it and the feed's logic), or
        # `tail` behind it, which moves up when the head is taken. It goes on to the engine
        # through the feed and the skid buffer. A read is issued only when the words already
        # on their way (in flight, landed) leave a place for it after this clock's take.
        in_flight = Signal()        # a store read was issued last clock
        head = Signal(self.W, name="landed_head")
        tail = Signal(self.W, name="landed_tail")
        n_landed = Signal(range(3))
        m.d.comb += self.busy.eq(replay_more | in_flight | (n_landed != 0) | self.feed_busy)

        head_valid = Signal()
        m.d.comb += [head_valid.eq(n_landed != 0),
                     self.o_stream.valid.eq(head_valid), self.o_stream.payload.eq(head)]
        # A read is issued while the landed words and the one in flight leave a place after
        # this clock's take: at most two are on their way, so the landed registers never
        # overflow, and a word a clock flows while the feed takes one a clock.
        take = Signal()             # the store feed takes the landed head
        m.d.comb += take.eq(head_valid & self.o_stream.ready)
        issue = Signal()            # read the store at rptr
        m.d.comb += issue.eq(replay_more & ~stop & ~self.wr & ~(epoch_end & last_epoch)
                             & ((in_flight + n_landed < 2) | take))
        m.d.sync += in_flight.eq(issue)
        n_one, n_two = n_landed == 1, n_landed == 2
        with m.If(take & n_two):
            m.d.sync += head.eq(tail)
        with m.Elif(in_flight & ((n_landed == 0) | (take & n_one))):
            m.d.sync += head.eq(self.rdata)
        with m.If(in_flight & ((n_one & ~take) | (n_two & take))):
            m.d.sync += tail.eq(self.rdata)
        m.d.sync += n_landed.eq(n_landed + in_flight - take)
        with m.If(stop):            # the words on their way are dropped with the replay
            m.d.sync += n_landed.eq(0)
        # Store port: the command unit writes (STORE) only while replay is not busy.
        with m.If(self.wr):
            m.d.comb += [self.addr.eq(self.wr_addr), self.wdata.eq(self.wr_data),
                         self.we.eq(1)]
        with m.Else():
            m.d.comb += [self.addr.eq(rptr), self.re.eq(issue)]

        # The board's own time for a replay, free of the host's polling latency.
        with m.If(start):
            m.d.sync += [replay_timing.eq(1), replay_cycles.eq(0)]
        with m.Elif(replay_timing):
            m.d.sync += replay_cycles.eq(replay_cycles + 1)
            with m.If(~self.busy & self.idle):
                m.d.sync += replay_timing.eq(0)

        # store_len is at most depth when a replay starts (and is not written while one
        # runs): its low sbits bits are the whole of it.
        len_one = Signal()
        m.d.sync += len_one.eq(store_len == 1)
        epoch_start = [rptr.eq(0), at_last.eq(len_one), len_m2.eq(store_len[:sbits] - 2)]
        # rptr == len_m2 as the carry out of (their XNOR + 1): a carry chain, not a tree of
        # LUTs (which Yosys maps as a chain of LUTs, the slowest path of the UP5K system)
        same = Signal(sbits)
        at_m2 = Signal()
        m.d.comb += [same.eq(~(rptr ^ len_m2)), at_m2.eq((same + 1)[sbits])]
        # The read decision moves the address only; the epoch's count follows a clock later
        # (epoch_end), so `issue` stays a few gates from the flip-flops it enables. A read in
        # that clock is refused if the epoch that ended was the replay's last.
        with m.If(start):
            m.d.sync += epoch_start
        with m.Elif(issue):
            with m.If(at_last):
                m.d.sync += epoch_start
            with m.Else():
                m.d.sync += [rptr.eq(rptr + 1), at_last.eq(at_m2)]
        m.d.sync += epoch_end.eq(issue & at_last)
        with m.If(start):
            m.d.sync += [replay_left.eq(self.epochs), replay_more.eq(self.epochs != 0),
                         last_epoch.eq(self.epochs == 1), replay_done.eq(0)]
        with m.Elif(epoch_end):
            m.d.sync += [replay_left.eq(replay_left - 1), replay_more.eq(~last_epoch),
                         last_epoch.eq(replay_left == 2), replay_done.eq(replay_done + 1)]
        with m.If(stop):
            m.d.sync += [replay_left.eq(0), replay_more.eq(0)]
        return m
