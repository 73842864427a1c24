"""The board system: UART + frame layer + command unit + register file + Engine + sample store.

Platform independent: the board tops (`zipml.hw.boards`) wire ``rx``/``tx``/``leds`` to pins and
may replace `SampleStore` by a vendor RAM (SB_SPRAM256KA on the UP5K) with the same ports. The
Verilator simulation (`zipml.host.transport.SimTransport`) drives exactly this component's ``rx``
and reads its ``tx``, so the host driver cannot tell it from the board. docs/link.md has the
command semantics, the replay contract and how this gateware is pipelined.
"""

import functools
import operator

from amaranth.hdl import Module, Signal, Const, Mux, Cat
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .frame import FrameReceiver, FrameSender
from .onehot import OneHotFSM
from .store_feed import StoreFeed
from .uart import UartRx, UartTx

__all__ = ["System", "SampleStore", "divisor_for", "engine_class", "LED_COUNT"]

LED_COUNT = 4  # enable, replay running, overflow, bad frame seen


def divisor_for(clk_freq, baud, tolerance=0.02):
    """UART clocks per bit for ``clk_freq``/``baud``; error when the rate is off by > 2%."""
    if clk_freq <= 0 or baud <= 0:
        raise ValueError(f"clk_freq and baud must be positive, got {clk_freq!r}, {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"baud {baud} is too fast for {clk_freq} Hz: the UART needs >= 4 clocks "
                         f"per bit (at most {clk_freq / 4:.0f} baud)")
    err = abs(clk_freq / divisor - baud) / baud
    if err > tolerance:
        raise ValueError(f"baud {baud} from {clk_freq} Hz needs divisor {clk_freq / baud:.3f}; "
                         f"{divisor} is {err:.1%} off (> {tolerance:.0%}); pick a baud that "
                         f"divides the clock")
    return divisor


class SampleStore(wiring.Component):
    """Single-port on-chip word memory for the replay sample store.

    Single ported on purpose (the command unit writes it only while no replay runs, the replay
    only reads), so it maps to the UP5K's SPRAM as well as to block RAM.

    Parameters
    ----------
    W : int
        Word width (the engine's stream width).
    depth : int
        Words.

    Ports
    -----
    addr : In(range(depth))
    wdata : In(W)
    we : In(1)
    re : In(1)
        Read enable; ``rdata`` holds its value while ``re`` is low.
    rdata : Out(W)
        ``mem[addr]`` one clock after a cycle with ``re`` high. The system takes it in that
        clock; this store also holds it while ``re`` is low, a board's may not
        (`zipml.hw.boards.SpramStore`).
    """

    def __init__(self, W, depth):
        self.W, self.depth = W, depth
        super().__init__({
            "addr": In(range(depth)), "wdata": In(W), "we": In(1), "re": In(1), "rdata": Out(W),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.W, depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()     # never read and written in one clock (we wins, re is low)
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                     rp.addr.eq(self.addr), rp.en.eq(self.re), self.rdata.eq(rp.data)]
        return m


def engine_class(arch):
    """The engine gateware of an architecture (`zipml.reference.golden.ARCHS`): ``parallel``
    is `zipml.hw.engine.Engine`, ``serial`` `zipml.hw.serial_engine.SerialEngine`."""
    if arch == "parallel":
        from .engine import Engine
        return Engine
    if arch == "serial":
        from .serial_engine import SerialEngine
        return SerialEngine
    raise ValueError(f"unknown engine architecture {arch!r}; choose parallel or serial")


class System(wiring.Component):
    """UART-controlled ZipML engine with a replay sample store.

    Parameters
    ----------
    clk_freq : int
        System clock in Hz.
    baud : int
        UART rate; ``round(clk_freq / baud)`` clocks per bit must be >= 4 and within 2%.
    W, D_MAX, B_MAX, BUF_DEPTH : int
        The engine's synthesis parameters (docs/engine.md).
    STORE_DEPTH : int
        Sample store words of W bits (>= 1).
    max_payload : int
        Largest frame payload in bytes (`zipml.hw.protocol.MAX_PAYLOAD`).
    ARCH : str
        Engine architecture, ``parallel`` or ``serial`` (`engine_class`).
    L2 : bool
        Build the engine's L2 shrink; without it the ``caps`` register says so and the host
        refuses L2 jobs.
    COUNTER_BITS : int or None
        Bits of the engine counters the register map reads (``cycles``, ``samples``,
        ``words``, ``stall_cycles``: they count modulo ``2**COUNTER_BITS``); None: the engine's
        own width (48). Up to 32 there is no high word (the ``*_hi`` registers read 0) and no
        latch for it, and synthesis drops the engine's unread counter bits: a trim for the
        UP5K (docs/boards.md). ``caps`` announces it.
    STALL : bool
        Read the engine's ``stall_cycles``; False: ``stall_lo``/``stall_hi`` read 0, synthesis
        drops the counter, and ``caps`` says it is absent.
    LINK_BITS : int or None
        Width of the link health counters (``rx_ok``, ``rx_bad``, ``rx_overrun``,
        ``rx_uart_err``: they wrap modulo ``2**LINK_BITS``); None: the register map's 16.
        ``caps`` announces it.
    READBACK : bool
        The configuration registers (read-write, except ``ctrl``) read back what was
        written; False: they read 0 (the host keeps what it wrote; ``caps`` says so), which
        takes them out of the read multiplexer, and ``store_wptr``/``store_len`` keep only the
        store's address bits and whether a higher bit was written (all the system uses).

    Ports
    -----
    rx : In(1)
        UART line from the host, idle high.
    tx : Out(1)
        UART line to the host, idle high.
    leds : Out(LED_COUNT)
        0 engine enabled, 1 replay running, 2 engine overflow, 3 a bad frame was received.

    Throughput: the command unit moves one payload byte per 3 clocks, far faster than the UART
    (``10 * divisor`` clocks per byte); replay feeds the engine one store word per clock.
    Every decision of the command unit is a few gates after flip-flops (docs/link.md, "The
    board system in gateware"): a command takes ~10 clocks more than its payload to judge.
    """

    def __init__(self, clk_freq, baud, W=8, D_MAX=2048, B_MAX=8, BUF_DEPTH=256, STORE_DEPTH=1024,
                 max_payload=P.MAX_PAYLOAD, ARCH="parallel", L2=True, COUNTER_BITS=None,
                 STALL=True, LINK_BITS=None, READBACK=True):
        if W not in (8, 16, 32, 64):
            raise ValueError(f"W must be 8, 16, 32 or 64, got {W!r}")
        if STORE_DEPTH < 1:
            raise ValueError(f"STORE_DEPTH must be >= 1, got {STORE_DEPTH!r}")
        self.clk_freq = int(clk_freq)
        self.baud = baud
        self.divisor = divisor_for(clk_freq, baud)
        self.W, self.D_MAX, self.B_MAX = W, D_MAX, B_MAX
        self.ARCH, self.L2 = ARCH, bool(L2)
        if COUNTER_BITS is not None and not 16 <= COUNTER_BITS <= P.CAPS_COUNTER_MAX:
            raise ValueError(f"COUNTER_BITS must be 16..{P.CAPS_COUNTER_MAX} or None, got "
                             f"{COUNTER_BITS!r}")
        self.COUNTER_BITS, self.STALL = COUNTER_BITS, bool(STALL)
        if LINK_BITS is not None and not 1 <= LINK_BITS <= P.LINK_BITS_FULL:
            raise ValueError(f"LINK_BITS must be 1..{P.LINK_BITS_FULL} or None, got "
                             f"{LINK_BITS!r}")
        self.LINK_BITS, self.READBACK = LINK_BITS, bool(READBACK)
        engine_class(ARCH)      # an unknown architecture fails here, not at elaboration
        self.BUF_DEPTH, self.STORE_DEPTH = BUF_DEPTH, STORE_DEPTH
        self.max_payload = max_payload
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "leds": Out(LED_COUNT),
        })

    def make_engine(self):
        return engine_class(self.ARCH)(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX,
                                       BUF_DEPTH=self.BUF_DEPTH, L2=self.L2)

    def make_store(self):
        """The sample store; board tops override this to use a vendor RAM."""
        return SampleStore(self.W, self.STORE_DEPTH)

    def elaborate(self, platform):
        m = Module()
        W = self.W
        wbytes = W // 8
        log2_wbytes = wbytes.bit_length() - 1     # W is a power of two
        C, S = P.Command, P.Status
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.submodules.frame_rx = frx = FrameReceiver(self.max_payload)
        m.submodules.frame_tx = ftx = FrameSender()
        m.submodules.engine = eng = self.make_engine()
        m.submodules.store = store = self.make_store()
        m.submodules.store_feed = sfeed = StoreFeed(W, D_MAX=self.D_MAX)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_stream, frx.i_stream)
        wiring.connect(m, ftx.o_stream, utx.i_stream)

        # ---------------------------------------------------------------- register file
        sbits = self.STORE_DEPTH.bit_length()
        # Without READBACK, store_wptr and store_len hold the store's address bits and, above
        # them, one bit that says a higher bit was written (an address past the store either
        # way: the compares below treat the two alike).
        narrow = set() if self.READBACK else {"store_wptr", "store_len"}
        regs = {}
        for r in P.REGISTERS:
            if r.access is P.Access.RW and r.name != "ctrl":
                width = sbits + 1 if r.name in narrow and sbits < r.width else r.width
                regs[r.name] = Signal(width, name=f"reg_{r.name}")
        enable = Signal()
        # ctrl's strobes are registered pulses (the engine's clear fans out to most of it).
        clear_strobe = Signal()
        stop_strobe = Signal()
        m.d.sync += [clear_strobe.eq(0), stop_strobe.eq(0)]
        for r in P.ENGINE_REGISTERS:
            port = getattr(eng, r.engine)
            m.d.comb += port.eq(regs[r.name][:len(port)])
        m.d.comb += [eng.enable.eq(enable), eng.clear.eq(clear_strobe)]
        # The store feed reads the engine's q, mode and d, and its own registers; the seed's
        # halves are write strobes (registered pulses) with the written value beside them.
        seed_load = Signal(2)
        m.d.sync += seed_load.eq(0)
        m.d.comb += [sfeed.q.eq(regs["q"]), sfeed.mode.eq(regs["mode"]),
                     sfeed.d.eq(regs["d"][:len(sfeed.d)]), sfeed.store_p.eq(regs["store_p"]),
                     sfeed.store_round.eq(regs["store_round"]), sfeed.seed_load.eq(seed_load)]
        store_wptr = regs["store_wptr"]
        store_len = regs["store_len"]

        def map_register(name, width=None):
            """A register of the system itself, as wide as the register map says (or
            ``width``): the link counters wrap at their width."""
            return Signal(width or P.REGISTER_BY_NAME[name].width, name=name)

        link = {name: map_register(name, self.LINK_BITS) for name in P.LINK_COUNTERS}
        with m.If(urx.overrun):
            m.d.sync += link["rx_overrun"].eq(link["rx_overrun"] + 1)
        with m.If(urx.error):
            m.d.sync += link["rx_uart_err"].eq(link["rx_uart_err"] + 1)

        # ---------------------------------------------------------------- engine input
        # Every word reaches the engine through a skid buffer (a word register and a spare):
        # its `ready` to the producers is a flip-flop, so neither the sample store's read
        # enable nor the command unit waits on the engine's own ready logic in the same clock.
        feed_valid = Signal()       # a word offered to the buffer (replay or STREAM)
        feed_data = Signal(W)
        feed_ready = Signal()
        main_valid, main = Signal(), Signal(W)
        spare_valid, spare = Signal(), Signal(W)
        m.d.comb += [feed_ready.eq(~spare_valid),
                     eng.i_stream.valid.eq(main_valid), eng.i_stream.payload.eq(main)]
        # The engine's ready decides one gate per flip-flop: whether main advances. A stop or
        # a clear drops the words waiting here (a cleared engine must not get an old word).
        advance = Signal()
        flush = Signal()
        m.d.comb += [advance.eq(~main_valid | eng.i_stream.ready),
                     flush.eq(stop_strobe | clear_strobe)]
        with m.If(advance):
            m.d.sync += main.eq(Mux(spare_valid, spare, feed_data))
        with m.Elif(~spare_valid):
            m.d.sync += spare.eq(feed_data)
        m.d.sync += [main_valid.eq(~flush & Mux(advance, spare_valid | feed_valid, main_valid)),
                     spare_valid.eq(~flush & ~advance & (spare_valid | feed_valid))]
        # The system is idle when the engine is and no word waits for it.
        idle = Signal()
        m.d.comb += idle.eq(eng.idle & ~main_valid & ~spare_valid)

        # ---------------------------------------------------------------- replay
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
        replay_done = map_register("replay_done")
        replay_cycles = map_register("replay_cycles")
        replay_timing = Signal()    # REPLAY started, store or engine not yet done
        rptr = Signal(range(self.STORE_DEPTH))
        # A store word lands, the clock after its read, in one of two registers: `head`, the
        # word the store feed sees (a flip-flop, nothing between it and the feed's logic), or
        # `tail` behind it, which moves up when the head is taken. It goes on to the engine
        # through the feed and the skid buffer. A read is issued only when the words already
        # on their way (in flight, landed) leave a place for it after this clock's take.
        in_flight = Signal()        # a store read was issued last clock
        head = Signal(W, name="landed_head")
        tail = Signal(W, name="landed_tail")
        n_landed = Signal(range(3))
        replay_busy = Signal()
        m.d.comb += replay_busy.eq(replay_more | in_flight | (n_landed != 0) | sfeed.busy)
        replay_start = Signal()     # registered pulse from DECODE
        m.d.sync += replay_start.eq(0)

        # ---------------------------------------------------------------- status
        # The command unit and the status register see the engine's state one clock late
        # (the engine's idle is deep logic inside it), which nothing can tell: the engine only
        # starts work that the command unit or a replay gives it.
        idle_q = Signal()
        replay_busy_q = Signal()
        m.d.sync += [idle_q.eq(idle), replay_busy_q.eq(replay_busy)]
        status = Signal(3)
        m.d.comb += status.eq(Cat(idle_q, eng.overflow, replay_busy_q))
        bad_seen = Signal()
        m.d.comb += self.leds.eq(Cat(enable, replay_busy, eng.overflow, bad_seen))

        # Counter high words, latched when the low word is read (in BOUND below, the clock the
        # low word is taken), so the two halves of a running counter come from the same clock.
        # The counters as the map reads them: COUNTER_BITS low bits (the engine's unread high
        # bits are swept by synthesis), stall_cycles only with STALL.
        cbits_read = {name: min(len(getattr(eng, name)), self.COUNTER_BITS or 1 << 16)
                      for name in P.COUNTERS if self.STALL or name != "stall_cycles"}
        counter_hi = {name: Signal(min(32, n - 32), name=f"{name}_hi_latch")
                      for name, n in cbits_read.items() if n > 32}

        params = {"param_w": W, "param_d_max": self.D_MAX, "param_b_max": self.B_MAX,
                  "param_buf_depth": self.BUF_DEPTH, "param_store_depth": self.STORE_DEPTH,
                  "param_max_payload": self.max_payload, "param_clk_hz": self.clk_freq,
                  "param_divisor": self.divisor}

        def read_value(r):
            """What register `r` reads as (a constant or a signal)."""
            if r.name == "id":
                return Const(P.ID_MAGIC, 32)
            if r.name in params:
                return Const(params[r.name], 32)
            if r.name == "caps":
                return Const(P.caps_value(getattr(eng, "L2", True), getattr(eng, "ARCH_CODE", 0),
                                          counter_bits=max(cbits_read.values()),
                                          stall="stall_cycles" in cbits_read,
                                          link_bits=self.LINK_BITS or P.LINK_BITS_FULL,
                                          readback=self.READBACK), 32)
            if r.name == "ctrl":
                return enable
            if r.name == "status":
                return status
            if r.name == "replay_done":
                return replay_done
            if r.name == "replay_cycles":
                return replay_cycles
            if r.name in link:
                return link[r.name]
            if r.access is P.Access.RW and not self.READBACK:
                return Const(0, 32)                              # not read back
            if r.access is P.Access.WO:
                return Const(0, 32)
            if r.engine in P.COUNTERS and r.part == 1:
                return counter_hi.get(r.engine, Const(0, 32))    # no high word: reads 0
            if r.engine in P.COUNTERS:
                if r.engine not in cbits_read:
                    return Const(0, 32)                          # not counted in this build
                return getattr(eng, r.engine)[:min(32, cbits_read[r.engine])]
            return regs[r.name]

        # ---------------------------------------------------------------- command unit state
        # The frame's header stays in `info`, and its payload in the receive buffer, until the
        # command unit releases the frame.
        info = frx.o_frame.payload
        length = Signal(range(self.max_payload + 1))
        m.d.comb += length.eq(info.length)      # a good frame's length is <= max_payload
        is_cmd = {c: Signal(name=f"is_{c.name.lower()}") for c in C if c is not C.NAK}
        resp_status = Signal(8)
        resp_len = Signal(range(self.max_payload + 1))   # response payload bytes (status + data)
        has_data = Signal()         # the response has data after its status byte
        last_seq = Signal(9, init=0x100)   # bit 8 set: no effect command executed yet

        # Payload bytes are read in three clocks each: A presents idx to the buffer (whose read
        # port is synchronous) unless at_end, B takes the byte and advances idx, C lets at_end
        # catch up (a registered compare of idx), so no decision waits on a compare.
        idx = Signal(range(self.max_payload + 1))   # payload byte index
        phase = Signal(range(3))
        PH_A, PH_B, PH_C = 0, 1, 2
        at_end = Signal()           # idx == length (one clock behind idx)
        at_five = Signal()          # idx == 5 (one clock behind idx)
        m.d.sync += [at_end.eq(idx == length), at_five.eq(idx == 5)]
        m.d.comb += frx.rd_addr.eq(idx)

        # The first five payload bytes (little endian) while a command is judged; then the word
        # being assembled (STREAM, STORE, WRITE_MODEL), in the same flip-flops.
        arg = Signal(max(40, W))
        acc = arg[:max(W, 32)]
        nb = Signal(range(max(wbytes, 5)))  # byte lane of arg: argument byte, then word byte
        rdata32 = Signal(32)
        k = Signal(3)               # header byte being sent, then byte within rdata32
        max_count = (self.max_payload - 1) // 4     # model words in one response
        cbits = max_count.bit_length()
        words_left = Signal(range(max_count + 1))
        last_word = Signal()        # words_left == 1
        maddr = Signal(range(self.D_MAX))
        mwait = Signal(range(eng.MODEL_READ_LATENCY + 1))

        reg_addr = arg[0:8]
        reg_wvalue = arg[8:40]
        model_base = arg[0:16]
        model_count = arg[16:32]

        # The response goes to the frame sender through a register (nothing combinational
        # crosses from the command unit into the sender and the UART); a byte is loaded only
        # while the register is empty, 2 clocks a byte at most, still far above the UART's rate.
        tx = ftx.i_stream
        tx_valid = Signal()
        tx_data = Signal(8)
        tx_last = Signal()
        m.d.comb += [tx.valid.eq(tx_valid), tx.payload.data.eq(tx_data),
                     tx.payload.last.eq(tx_last)]
        with m.If(tx.ready):
            m.d.sync += tx_valid.eq(0)

        def send(byte, last):
            m.d.sync += [tx_valid.eq(1), tx_data.eq(byte), tx_last.eq(last)]

        # The engine's input: replay words through the store feed, or STREAM words from the
        # command unit, never both (STREAM is refused while a replay runs, the feed included).
        push_valid = Signal()       # registered: acc holds a STREAM word for the engine
        head_valid = Signal()
        m.d.comb += [head_valid.eq(n_landed != 0),
                     sfeed.i_stream.valid.eq(head_valid),
                     sfeed.i_stream.payload.eq(head),
                     sfeed.o_stream.ready.eq(feed_ready),
                     feed_valid.eq(sfeed.o_stream.valid | push_valid),
                     feed_data.eq(Mux(sfeed.o_stream.valid, sfeed.o_stream.payload, acc[:W])),
                     sfeed.seed.eq(reg_wvalue),
                     sfeed.restart.eq(replay_start | stop_strobe | clear_strobe)]
        # The model port is the engine's only while it is idle (READ_MODEL/WRITE_MODEL check).
        m.d.comb += [eng.model_addr.eq(maddr), eng.model_wdata.eq(acc[:32])]

        # Store port: the command unit writes (STORE) only while replay is not busy; the write
        # is a registered request, the clock after the word is complete (acc holds still then).
        store_wr = Signal()
        m.d.sync += store_wr.eq(0)
        # A read is issued while the landed words and the one in flight leave a place after
        # this clock's take: at most two are on their way, so the landed registers never
        # overflow, and a word a clock flows while the feed takes one a clock.
        take = Signal()             # the store feed takes the landed head
        m.d.comb += take.eq(head_valid & sfeed.i_stream.ready)
        issue = Signal()            # read the store at rptr
        m.d.comb += issue.eq(replay_more & ~stop_strobe & ~store_wr & ~(epoch_end & last_epoch)
                             & ((in_flight + n_landed < 2) | take))
        m.d.sync += in_flight.eq(issue)
        n_one, n_two = n_landed == 1, n_landed == 2
        with m.If(take & n_two):
            m.d.sync += head.eq(tail)
        with m.Elif(in_flight & ((n_landed == 0) | (take & n_one))):
            m.d.sync += head.eq(store.rdata)
        with m.If(in_flight & ((n_one & ~take) | (n_two & take))):
            m.d.sync += tail.eq(store.rdata)
        m.d.sync += n_landed.eq(n_landed + in_flight - take)
        with m.If(stop_strobe):     # the words on their way are dropped with the replay
            m.d.sync += n_landed.eq(0)
        with m.If(store_wr):
            m.d.comb += [store.addr.eq(store_wptr), store.wdata.eq(acc[:W]), store.we.eq(1)]
            # CHECK refused a STORE past STORE_DEPTH: the low bits never carry out.
            m.d.sync += store_wptr[:sbits].eq(store_wptr[:sbits] + 1)
        with m.Else():
            m.d.comb += [store.addr.eq(rptr), store.re.eq(issue)]

        # The board's own time for a replay, free of the host's polling latency.
        with m.If(replay_start):
            m.d.sync += [replay_timing.eq(1), replay_cycles.eq(0)]
        with m.Elif(replay_timing):
            m.d.sync += replay_cycles.eq(replay_cycles + 1)
            with m.If(~replay_busy & idle):
                m.d.sync += replay_timing.eq(0)

        # store_len is at most STORE_DEPTH when a replay starts (and is not written while one
        # runs): its low sbits bits are the whole of it.
        len_one = Signal()
        m.d.sync += len_one.eq(store_len == 1)
        epoch_start = [rptr.eq(0), at_last.eq(len_one), len_m2.eq(store_len[:sbits] - 2)]
        # rptr == len_m2 as the carry out of (their XNOR + 1): a carry chain, not a tree of
        # LUTs (which Yosys maps as a chain of LUTs, the slowest path of the UP5K system)
        same = Signal(sbits)
        at_m2 = Signal()
        m.d.comb += [same.eq(~(rptr ^ len_m2)), at_m2.eq((same + 1)[sbits])]
        replay_epochs = arg[0:16]   # REPLAY's payload, held until the next command
        # The read decision moves the address only; the epoch's count follows a clock later
        # (epoch_end), so `issue` stays a few gates from the flip-flops it enables. A read in
        # that clock is refused if the epoch that ended was the replay's last.
        with m.If(replay_start):
            m.d.sync += epoch_start
        with m.Elif(issue):
            with m.If(at_last):
                m.d.sync += epoch_start
            with m.Else():
                m.d.sync += [rptr.eq(rptr + 1), at_last.eq(at_m2)]
        m.d.sync += epoch_end.eq(issue & at_last)
        with m.If(replay_start):
            m.d.sync += [replay_left.eq(replay_epochs), replay_more.eq(replay_epochs != 0),
                         last_epoch.eq(replay_epochs == 1), replay_done.eq(0)]
        with m.Elif(epoch_end):
            m.d.sync += [replay_left.eq(replay_left - 1), replay_more.eq(~last_epoch),
                         last_epoch.eq(replay_left == 2), replay_done.eq(replay_done + 1)]
        with m.If(stop_strobe):
            m.d.sync += [replay_left.eq(0), replay_more.eq(0)]

        # ------------------------------------------------ command evaluation
        # A command's payload arguments are read (ARGS), then it is evaluated in four steps, one
        # clock each (`step`, one-hot, while the FSM is in EVAL): CHECK and BOUND register every
        # judgement of it (length, address, bounds, busy, repeat), JUDGE turns them into the
        # status and prepares the answer, DECODE acts. Each step is a few gates deep; the UART
        # leaves time for many more clocks than that.
        step = Signal(4)
        CHECK, BOUND, JUDGE, DECODE = (step[i] for i in range(4))
        m.d.sync += step.eq(step << 1)

        # CHECK: facts about the command, each a compare of registers.
        chk_dup = Signal()          # an effect command repeating the last seq
        chk_cmd = Signal()          # unknown command
        chk_busy = Signal()         # the engine or the replay is not in the state it needs
        busy_first = Signal()       # BUSY before BAD_ADDR (STREAM, STORE, REPLAY)
        len_is = {n: Signal(name=f"len_is_{n}") for n in (0, 1, 2, 4, 5)}
        len_words = Signal()        # whole W-bit words
        len_model = Signal()        # 4k + 2 bytes, k >= 1 (WRITE_MODEL)
        count_bad = Signal()        # READ_MODEL count 0 or above max_count
        readable = Signal()
        writable = Signal()
        # BOUND: the command's length and address verdicts.
        bad_len = Signal()
        bad_addr = Signal()
        # JUDGE: the status.
        fail = Signal()

        def any_cmd(*cmds):
            return Cat(*(is_cmd[c] for c in cmds)).any()

        def one_hot(pairs):
            """OR of (flag & value): a select by one-hot flags, no priority chain."""
            return functools.reduce(operator.or_, (Mux(f, v, 0) for f, v in pairs))

        is_effect = any_cmd(*sorted(P.EFFECT_COMMANDS))
        is_store = is_cmd[C.STORE]
        is_model = any_cmd(C.READ_MODEL, C.WRITE_MODEL)
        need_free = any_cmd(C.STREAM, C.STORE, C.REPLAY, C.READ_MODEL, C.WRITE_MODEL)
        need_enable = any_cmd(C.STREAM, C.REPLAY)

        addr_known = Signal()
        addr_rw = Signal()
        with m.Switch(reg_addr):
            for r in P.REGISTERS:
                with m.Case(r.addr):
                    m.d.comb += [addr_known.eq(1), addr_rw.eq(r.access is not P.Access.RO)]
        # One flip-flop per register: its address is the command's. Every use of the address
        # after CHECK (the read, the write, the counter latch) is a flip-flop, not a decoder.
        sel = {r.addr: Signal(name=f"sel_{r.name}") for r in P.REGISTERS}
        whole_words = (length[:log2_wbytes] == 0) if log2_wbytes else Const(1, 1)
        # The range of a STORE or a model access, at the width of its memory (any higher
        # address bit is out of range anyway): summed in CHECK, compared in BOUND. A
        # READ_MODEL count above max_count is BAD_LEN before the bound matters, and
        # WRITE_MODEL's (length - 2) / 4 is length[2:].
        dbits = self.D_MAX.bit_length()
        store_hi = Signal()         # an address bit above the store's is set
        model_hi = Signal()         # an address bit above the model's is set
        store_end = Signal(sbits + 1)
        model_end = Signal(dbits + 1)
        store_over = Signal()
        model_over = Signal()
        store_len_bad = Signal()
        model_words = Mux(is_cmd[C.READ_MODEL], model_count[:cbits], length[2:])

        # Register reads: BOUND takes the addressed register of each half of the map (by
        # address bit 5; 0 in the half not addressed), JUDGE ORs the halves into rdata32.
        halves = {}
        for r in P.REGISTERS:
            halves.setdefault(r.addr >> 5 & 1, []).append(r)
        half_value = {h: Signal(32, name=f"rd_half_{h}") for h in halves}

        with m.If(CHECK):
            m.d.sync += [
                chk_dup.eq(is_effect & ~last_seq[8] & (last_seq[:8] == info.seq)),
                chk_cmd.eq(~Cat(*is_cmd.values()).any()),
                *(flag.eq(length == n) for n, flag in len_is.items()),
                len_words.eq(whole_words),
                len_model.eq((length >= 6) & (length[:2] == 2)),
                count_bad.eq((model_count == 0) | (model_count > max_count)),
                readable.eq(addr_known), writable.eq(addr_rw),
                busy_first.eq(need_enable | is_store),
                chk_busy.eq((need_free & replay_busy_q) | (need_enable & ~enable)
                            | (is_model & ~idle_q)),
                store_hi.eq(store_wptr[sbits:] != 0),
                store_end.eq(store_wptr[:sbits] + (length >> log2_wbytes)),
                model_hi.eq(model_base[dbits:] != 0),
                model_end.eq(model_base[:dbits] + model_words),
                store_len_bad.eq((store_len == 0) | (store_len > self.STORE_DEPTH)),
            ]
            m.d.sync += [sel[a].eq(reg_addr == a) for a in sel]

        with m.If(BOUND):
            m.d.sync += [
                bad_len.eq(one_hot([
                    (is_cmd[C.READ_REG], ~len_is[1]),
                    (is_cmd[C.WRITE_REG], ~len_is[5]),
                    (is_cmd[C.STREAM] | is_store, len_is[0] | ~len_words),
                    (is_cmd[C.REPLAY], ~len_is[2]),
                    (is_cmd[C.READ_MODEL], ~len_is[4] | count_bad),
                    (is_cmd[C.WRITE_MODEL], ~len_model),
                ])),
                bad_addr.eq(one_hot([(is_cmd[C.READ_REG], ~readable),
                                     (is_cmd[C.WRITE_REG], ~writable),
                                     (is_cmd[C.REPLAY], store_len_bad)])),
                store_over.eq(is_store & (store_hi | (store_end > self.STORE_DEPTH))),
                model_over.eq(is_model & (model_hi | (model_end > self.D_MAX))),
            ]
            for h, members in halves.items():
                m.d.sync += half_value[h].eq(one_hot((sel[r.addr], read_value(r))
                                                     for r in members))
            # The counter's high word is latched in the clock its low word is taken.
            with m.If(is_cmd[C.READ_REG] & len_is[1]):
                for name, hi in counter_hi.items():
                    with m.If(sel[P.COUNTERS[name][0].addr]):
                        m.d.sync += hi.eq(getattr(eng, name)[32:32 + len(hi)])

        with m.If(JUDGE):
            # The order of the checks is the status a command with several faults gets.
            any_bad_addr = bad_addr | store_over | model_over
            failing = chk_dup | chk_cmd | bad_len | chk_busy | any_bad_addr
            m.d.sync += fail.eq(failing)
            with m.If(chk_dup):
                m.d.sync += resp_status.eq(S.DUPLICATE)
            with m.Elif(chk_cmd):
                m.d.sync += resp_status.eq(S.BAD_CMD)
            with m.Elif(bad_len):
                m.d.sync += resp_status.eq(S.BAD_LEN)
            with m.Elif(busy_first & chk_busy):
                m.d.sync += resp_status.eq(S.BUSY)
            with m.Elif(any_bad_addr):
                m.d.sync += resp_status.eq(S.BAD_ADDR)
            with m.Elif(chk_busy):
                m.d.sync += resp_status.eq(S.BUSY)
            with m.Else():
                m.d.sync += resp_status.eq(S.OK)
            # The answer (data only for a read that passes), and what the command does if it
            # passes, set up whether it passes or not: only the states DECODE goes to use them.
            read_model = is_cmd[C.READ_MODEL]
            with_data = ~failing & (is_cmd[C.READ_REG] | read_model)
            m.d.sync += [
                has_data.eq(with_data),
                resp_len.eq(Mux(with_data,
                                Mux(read_model, model_count[:cbits] << 2, 4) + 1, 1)),
                rdata32.eq(functools.reduce(operator.or_, half_value.values())),
                maddr.eq(model_base),
                words_left.eq(Mux(read_model, model_count[:cbits], 1)),
                last_word.eq(Mux(read_model, model_count[:cbits] == 1, 1)),
                idx.eq(Mux(is_cmd[C.WRITE_MODEL], 2, 0)), phase.eq(PH_C), nb.eq(0),
            ]

        # ---------------------------------------------------------------- responder
        # Sends the response frame's body (header, status, data) to the frame sender while the
        # command FSM waits in ANSWER (resp_status, resp_len and has_data set beforehand), and
        # says so with resp_done.
        answering = Signal()        # the command FSM is in ANSWER
        resp_done = Signal()
        resp = OneHotFSM(m, ["IDLE", "HEADER", "MODEL_READ", "DATA"], "resp")
        # The byte to send is worked out a clock ahead into `next_byte`; `next_ok` says it is
        # for the present k, state and data (any of them changing clears it for a clock).
        hdr = Signal(8)
        with m.Switch(k):
            with m.Case(0):
                m.d.comb += hdr.eq(info.seq)
            with m.Case(1):
                m.d.comb += hdr.eq(Mux(info.ok, info.cmd | P.ACK, C.NAK | P.ACK))
            with m.Case(2):
                m.d.comb += hdr.eq(resp_len[:8])
            with m.Case(3):
                m.d.comb += hdr.eq(resp_len[8:])
            with m.Default():
                m.d.comb += hdr.eq(resp_status)
        next_byte = Signal(8)
        next_ok = Signal()
        m.d.sync += [next_byte.eq(Mux(resp["DATA"], rdata32.word_select(k[:2], 8), hdr)),
                     next_ok.eq(resp["HEADER"] | resp["DATA"])]
        can_send = ~tx_valid & next_ok

        def resp_send(last):
            send(next_byte, last)
            m.d.sync += [k.eq(k + 1), next_ok.eq(0)]

        def resp_goto(state):
            m.d.sync += next_ok.eq(0)
            resp.next(state)

        with resp.state("IDLE"):
            with m.If(answering & ~resp_done):
                m.d.sync += k.eq(0)
                resp_goto("HEADER")
        with resp.state("HEADER"):
            with m.If(can_send):
                resp_send((k == 4) & ~has_data)
                with m.If(k == 4):
                    m.d.sync += k.eq(0)
                    with m.If(~has_data):
                        m.d.sync += resp_done.eq(1)
                        resp_goto("IDLE")
                    with m.Elif(is_cmd[C.READ_MODEL]):
                        m.d.sync += mwait.eq(eng.MODEL_READ_LATENCY)
                        resp_goto("MODEL_READ")
                    with m.Else():
                        resp_goto("DATA")
        with resp.state("MODEL_READ"):
            with m.If(mwait != 0):
                m.d.sync += mwait.eq(mwait - 1)
            with m.Else():
                m.d.sync += [rdata32.eq(eng.model_rdata), maddr.eq(maddr + 1)]
                resp_goto("DATA")
        with resp.state("DATA"):
            with m.If(can_send):
                resp_send((k[:2] == 3) & last_word)
                with m.If(k[:2] == 3):
                    m.d.sync += [k.eq(0), words_left.eq(words_left - 1),
                                 last_word.eq(words_left == 2)]
                    with m.If(last_word):
                        m.d.sync += resp_done.eq(1)
                        resp_goto("IDLE")
                    with m.Else():
                        m.d.sync += mwait.eq(eng.MODEL_READ_LATENCY)
                        resp_goto("MODEL_READ")

        def respond():
            """Send the answer JUDGE (or IDLE, for a bad frame) prepared."""
            cmd.next("ANSWER")

        def read_payload(on_byte, on_end):
            """One step of reading payload byte idx (PH_A, PH_B, PH_C above)."""
            with m.Switch(phase):
                with m.Case(PH_A):
                    with m.If(at_end):
                        on_end()
                    with m.Else():
                        m.d.sync += phase.eq(PH_B)
                with m.Case(PH_B):
                    on_byte(frx.rd_data)
                    m.d.sync += [idx.eq(idx + 1), phase.eq(PH_C)]
                with m.Default():
                    m.d.sync += phase.eq(PH_A)

        # ---------------------------------------------------------------- command FSM
        cmd = OneHotFSM(m, ["IDLE", "ARGS", "EVAL", "WRITE_REG", "WRITE_CTRL", "WORD_BYTES",
                            "WORD_DONE", "ANSWER"], "cmd")
        with cmd.state("IDLE"):
            with m.If(frx.o_frame.valid):
                m.d.sync += [is_cmd[c].eq(info.cmd == c) for c in is_cmd]
                m.d.sync += [idx.eq(0), phase.eq(PH_C), nb.eq(0)]
                with m.If(info.ok):
                    m.d.sync += link["rx_ok"].eq(link["rx_ok"] + 1)
                    cmd.next("ARGS")
                with m.Else():
                    m.d.sync += [link["rx_bad"].eq(link["rx_bad"] + 1), bad_seen.eq(1),
                                 resp_status.eq(S.BAD_FRAME), resp_len.eq(1),
                                 has_data.eq(0)]
                    cmd.next("ANSWER")

        with cmd.state("ARGS"):
            # Up to five payload bytes into `arg`.
            def arg_byte(byte):
                m.d.sync += [arg.word_select(nb, 8).eq(byte), nb.eq(nb + 1)]

            def args_done():
                m.d.sync += step.eq(1)
                cmd.next("EVAL")
            with m.If(at_five & (phase == PH_A)):
                args_done()
            with m.Else():
                read_payload(arg_byte, args_done)

        with cmd.state("EVAL"):
            with m.If(DECODE):
                with m.If(fail):
                    respond()
                with m.Else():
                    # An effect command that passed JUDGE will succeed: its seq is the
                    # last executed one from here on (PING forgets it).
                    with m.If(is_effect):
                        m.d.sync += last_seq.eq(info.seq)
                    with m.If(is_cmd[C.PING]):
                        m.d.sync += last_seq.eq(0x100)
                    with m.If(any_cmd(C.PING, C.READ_REG, C.READ_MODEL, C.REPLAY)):
                        respond()
                    with m.If(is_cmd[C.WRITE_REG]):
                        cmd.next("WRITE_REG")
                    with m.If(any_cmd(C.STREAM, C.STORE, C.WRITE_MODEL)):
                        cmd.next("WORD_BYTES")
                    with m.If(is_cmd[C.REPLAY]):
                        m.d.sync += replay_start.eq(1)

        with cmd.state("WRITE_REG"):
            for r in P.REGISTERS:                   # a writable address: CHECK saw to it
                if r.access is P.Access.RW and r.name != "ctrl":
                    with m.If(sel[r.addr]):
                        reg = regs[r.name]
                        value = reg_wvalue[:len(reg)]
                        if len(reg) < r.width:          # narrowed: address bits + "higher"
                            value = Cat(reg_wvalue[:len(reg) - 1],
                                        reg_wvalue[len(reg) - 1:r.width].any())
                        m.d.sync += reg.eq(value)
            # the seed's halves go into the generators (reg_wvalue holds until the next command)
            m.d.sync += seed_load.eq(Cat(sel[P.REGISTER_BY_NAME["seed_lo"].addr],
                                         sel[P.REGISTER_BY_NAME["seed_hi"].addr]))
            with m.If(sel[P.REGISTER_BY_NAME["ctrl"].addr]):
                m.d.sync += [clear_strobe.eq(reg_wvalue[1]), stop_strobe.eq(reg_wvalue[2])]
                with m.If(reg_wvalue[1]):
                    m.d.sync += bad_seen.eq(0)
                cmd.next("WRITE_CTRL")
            with m.Else():
                respond()

        with cmd.state("WRITE_CTRL"):
            # enable changes the clock after the clear/stop pulse: a clear with enable
            # clears a stopped engine, as the strobe-then-register order always did.
            m.d.sync += enable.eq(reg_wvalue[0])
            respond()

        # Assemble one word (W bits for STREAM/STORE, 32 for WRITE_MODEL) from the payload.
        word_last = Mux(is_cmd[C.WRITE_MODEL], nb == 3, nb == wbytes - 1)
        with cmd.state("WORD_BYTES"):
            def word_byte(byte):
                m.d.sync += acc.word_select(nb, 8).eq(byte)
                with m.If(word_last):
                    m.d.sync += [nb.eq(0), push_valid.eq(is_cmd[C.STREAM])]
                    cmd.next("WORD_DONE")
                with m.Else():
                    m.d.sync += nb.eq(nb + 1)
            read_payload(word_byte, respond)

        with cmd.state("WORD_DONE"):
            # phase is PH_C: the next byte's read starts after this word is gone.
            with m.If(is_cmd[C.STREAM]):
                with m.If(feed_ready):
                    m.d.sync += push_valid.eq(0)
                    cmd.next("WORD_BYTES")
            with m.Elif(is_store):
                m.d.sync += store_wr.eq(1)
                cmd.next("WORD_BYTES")
            with m.Else():
                m.d.comb += eng.model_we.eq(1)
                m.d.sync += maddr.eq(maddr + 1)
                cmd.next("WORD_BYTES")

        with cmd.state("ANSWER"):
            # The frame is released once the responder is done and the sender has taken
            # the last body byte, as when the command unit handed it bytes directly: a
            # frame sent before the answer (against stop-and-wait) loses as many bytes as
            # it always did.
            m.d.comb += answering.eq(1)
            with m.If(resp_done & ~tx_valid):
                m.d.comb += frx.o_frame.ready.eq(1)
                m.d.sync += resp_done.eq(0)
                cmd.next("IDLE")
        return m
