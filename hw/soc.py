"""The board system: UART + frame layer + command unit + register file + Engine + sample store.

`System` wires its parts, each a component of its own module: `zipml.hw.uart` and
`zipml.hw.frame` (the link), `zipml.hw.command` (the command unit) with `zipml.hw.evaluate`
(its evaluation steps) and `zipml.hw.responder` (the answer), `zipml.hw.registers` (the register
file), `zipml.hw.replay` (the sample store's replay), `zipml.hw.store_feed` and
`zipml.hw.skid` (the engine's input), the engine and the sample store.

Platform independent: the board tops (`zipml.hw.boards`) wire ``rx``/``tx``/``leds`` to pins and
may replace `SampleStore` by a vendor RAM (SB_SPRAM256KA on the UP5K) with the same ports. The
Verilator simulation (`zipml.host.transport.SimTransport`) drives exactly this component's ``rx``
and reads its ``tx``, so the host driver cannot tell it from the board. docs/link.md has the
command semantics, the replay contract and how this gateware is pipelined.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .command import CommandUnit
from .engine import Engine
from .evaluate import Evaluator
from .frame import FrameReceiver, FrameSender
from .registers import RegisterFile
from .replay import Replay
from .responder import Responder
from .serial_engine import SerialEngine
from .skid import SkidBuffer
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
        return Engine
    if arch == "serial":
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
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.submodules.frame_rx = frx = FrameReceiver(self.max_payload)
        m.submodules.frame_tx = ftx = FrameSender()
        m.submodules.engine = eng = self.make_engine()
        m.submodules.store = store = self.make_store()
        m.submodules.store_feed = sfeed = StoreFeed(W, D_MAX=self.D_MAX)
        # The counters as the map reads them: COUNTER_BITS low bits (the engine's unread high
        # bits are swept by synthesis), stall_cycles only with STALL.
        counters = {name: min(len(getattr(eng, name)), self.COUNTER_BITS or 1 << 16)
                    for name in P.COUNTERS if self.STALL or name != "stall_cycles"}
        params = {"param_w": W, "param_d_max": self.D_MAX, "param_b_max": self.B_MAX,
                  "param_buf_depth": self.BUF_DEPTH, "param_store_depth": self.STORE_DEPTH,
                  "param_max_payload": self.max_payload, "param_clk_hz": self.clk_freq,
                  "param_divisor": self.divisor}
        m.submodules.registers = rf = RegisterFile(
            params, counters, self.STORE_DEPTH, L2=getattr(eng, "L2", True),
            arch_code=getattr(eng, "ARCH_CODE", 0), link_bits=self.LINK_BITS,
            readback=self.READBACK)
        m.submodules.command = cu = CommandUnit(W, self.D_MAX, self.max_payload)
        m.submodules.evaluate = ev = Evaluator(W, self.D_MAX, self.STORE_DEPTH,
                                               len(rf.store_wptr), self.max_payload)
        m.submodules.responder = resp = Responder(self.max_payload, eng.MODEL_READ_LATENCY)
        m.submodules.replay = rp = Replay(W, self.STORE_DEPTH, len(rf.store_len))
        m.submodules.skid = skid = SkidBuffer(W)
        info, args = frx.o_frame.payload, cu.args

        # ---------------------------------------------------------------- status
        # The system is idle when the engine is and no word waits for it. The command unit
        # and the status register see the engine's state one clock late (the engine's idle is
        # deep logic inside it), which nothing can tell: the engine only starts work that the
        # command unit or a replay gives it.
        idle = Signal()
        idle_q = Signal()
        replay_busy_q = Signal()
        m.d.comb += idle.eq(eng.idle & skid.empty)
        m.d.sync += [idle_q.eq(idle), replay_busy_q.eq(rp.busy)]
        m.d.comb += self.leds.eq(Cat(rf.enable, rp.busy, eng.overflow, rf.bad_seen))

        # ---------------------------------------------------------------- link
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_stream, frx.i_stream)
        wiring.connect(m, frx.o_frame, cu.frame)
        wiring.connect(m, resp.o_stream, ftx.i_stream)
        wiring.connect(m, ftx.o_stream, utx.i_stream)
        m.d.comb += [frx.rd_addr.eq(cu.rd_addr), cu.rd_data.eq(frx.rd_data)]

        # ---------------------------------------------------------------- command unit
        m.d.comb += [
            ev.start.eq(cu.evaluate), ev.is_cmd.eq(cu.is_cmd), ev.seq.eq(info.seq),
            ev.length.eq(info.length), ev.last_seq.eq(cu.last_seq),
            ev.model_base.eq(args.model.base), ev.model_count.eq(args.model.count),
            ev.store_wptr.eq(rf.store_wptr), ev.store_len.eq(rf.store_len),
            ev.readable.eq(rf.readable), ev.writable.eq(rf.writable), ev.enable.eq(rf.enable),
            ev.idle.eq(idle_q), ev.replay_busy.eq(replay_busy_q), ev.bad_frame.eq(cu.frame_bad),
            cu.judge.eq(ev.judge), cu.decode.eq(ev.decode), cu.fail.eq(ev.fail),
        ]
        m.d.comb += [
            resp.answer.eq(cu.answer), cu.answered.eq(resp.done), resp.header.eq(info),
            resp.resp_status.eq(ev.resp_status), resp.resp_len.eq(ev.resp_len),
            resp.has_data.eq(ev.has_data), resp.read_model.eq(cu.is_cmd.read_model),
            resp.prepare.eq(ev.judge), resp.reg_rdata.eq(rf.rdata),
            resp.count.eq(args.model.count),
            resp.model_rdata.eq(eng.model_rdata), cu.model_next.eq(resp.model_next),
        ]
        # The model port is the engine's only while it is idle (READ_MODEL/WRITE_MODEL check).
        m.d.comb += [eng.model_addr.eq(cu.model_addr), eng.model_we.eq(cu.model_we),
                     eng.model_wdata.eq(args.word[:32])]

        # ---------------------------------------------------------------- register file
        m.d.comb += [
            rf.addr.eq(args.reg.addr), rf.wvalue.eq(args.reg.value), rf.check.eq(ev.check),
            rf.read.eq(ev.bound), rf.latch.eq(ev.latch), rf.write.eq(cu.write),
            rf.write_ctrl.eq(cu.write_ctrl), cu.sel_ctrl.eq(rf.sel_ctrl),
            rf.store_wr.eq(cu.store_wr), rf.frame_ok.eq(cu.frame_ok),
            rf.frame_bad.eq(cu.frame_bad), rf.overrun.eq(urx.overrun),
            rf.uart_error.eq(urx.error), rf.status.eq(Cat(idle_q, eng.overflow, replay_busy_q)),
            rf.replay_done.eq(rp.replay_done), rf.replay_cycles.eq(rp.replay_cycles),
        ]
        m.d.comb += [getattr(rf, name).eq(getattr(eng, name)) for name in counters]
        for r in P.ENGINE_REGISTERS:
            port = getattr(eng, r.engine)
            m.d.comb += port.eq(getattr(rf, r.name)[:len(port)])
        m.d.comb += [eng.enable.eq(rf.enable), eng.clear.eq(rf.clear)]

        # ---------------------------------------------------------------- replay, engine input
        # The store feed reads the engine's q, mode and d, and its own registers; the seed's
        # halves are write strobes with the written value beside them.
        m.d.comb += [
            rp.start.eq(cu.replay_start), rp.stop.eq(rf.stop), rp.epochs.eq(args.epochs),
            rp.store_len.eq(rf.store_len), rp.wr.eq(cu.store_wr), rp.wr_addr.eq(rf.store_wptr),
            rp.wr_data.eq(args.word[:W]), rp.feed_busy.eq(sfeed.busy), rp.idle.eq(idle),
            store.addr.eq(rp.addr), store.wdata.eq(rp.wdata), store.we.eq(rp.we),
            store.re.eq(rp.re), rp.rdata.eq(store.rdata),
            sfeed.q.eq(rf.q), sfeed.mode.eq(rf.mode), sfeed.d.eq(rf.d[:len(sfeed.d)]),
            sfeed.store_p.eq(rf.store_p), sfeed.store_round.eq(rf.store_round),
            sfeed.seed.eq(args.reg.value), sfeed.seed_load.eq(rf.seed_load),
            sfeed.restart.eq(cu.replay_start | rf.stop | rf.clear),
        ]
        wiring.connect(m, rp.o_stream, sfeed.i_stream)
        # The engine's input: replay words through the store feed, or STREAM words from the
        # command unit, never both (STREAM is refused while a replay runs, the feed included).
        # A stop or a clear drops the words waiting in the skid buffer.
        m.d.comb += [
            skid.i_stream.valid.eq(sfeed.o_stream.valid | cu.o_stream.valid),
            skid.i_stream.payload.eq(Mux(sfeed.o_stream.valid, sfeed.o_stream.payload,
                                         cu.o_stream.payload)),
            sfeed.o_stream.ready.eq(skid.i_stream.ready), cu.o_stream.ready.eq(skid.i_stream.ready),
            skid.flush.eq(rf.stop | rf.clear),
        ]
        wiring.connect(m, skid.o_stream, eng.i_stream)
        return m
