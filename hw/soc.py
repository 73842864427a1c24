"""The board system: UART + frame layer + command unit + register file + Engine + sample store.

Platform independent: the board tops (`zipml.hw.boards`) wire ``rx``/``tx``/``leds`` to pins and
may replace `SampleStore` by a vendor RAM (SB_SPRAM256KA on the UP5K) with the same ports. The
Verilator simulation (`zipml.host.transport.SimTransport`) drives exactly this component's ``rx``
and reads its ``tx``, so the host driver cannot tell it from the board. docs/link.md has the
command semantics and the replay contract.
"""

from amaranth.hdl import Module, Signal, Const, Mux, Cat
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .frame import FrameReceiver, FrameSender
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
        ``mem[addr]`` one clock after a cycle with ``re`` high.
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
        rp = mem.read_port(transparent_for=(wp,))
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

    Ports
    -----
    rx : In(1)
        UART line from the host, idle high.
    tx : Out(1)
        UART line to the host, idle high.
    leds : Out(LED_COUNT)
        0 engine enabled, 1 replay running, 2 engine overflow, 3 a bad frame was received.

    Throughput: the command unit moves one payload byte per 2 clocks, far faster than the UART
    (``10 * divisor`` clocks per byte); replay feeds the engine one store word per clock.
    """

    def __init__(self, clk_freq, baud, W=8, D_MAX=2048, B_MAX=8, BUF_DEPTH=256, STORE_DEPTH=1024,
                 max_payload=P.MAX_PAYLOAD, ARCH="parallel", L2=True):
        if W not in (8, 16, 32, 64):
            raise ValueError(f"W must be 8, 16, 32 or 64, got {W!r}")
        if STORE_DEPTH < 1:
            raise ValueError(f"STORE_DEPTH must be >= 1, got {STORE_DEPTH!r}")
        self.clk_freq = int(clk_freq)
        self.baud = baud
        self.divisor = divisor_for(clk_freq, baud)
        self.W, self.D_MAX, self.B_MAX = W, D_MAX, B_MAX
        self.ARCH, self.L2 = ARCH, bool(L2)
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
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.submodules.frame_rx = frx = FrameReceiver(self.max_payload)
        m.submodules.frame_tx = ftx = FrameSender()
        m.submodules.engine = eng = self.make_engine()
        m.submodules.store = store = self.make_store()
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_stream, frx.i_stream)
        wiring.connect(m, ftx.o_stream, utx.i_stream)

        # ---------------------------------------------------------------- register file
        regs = {}
        for r in P.REGISTERS:
            if r.access is P.Access.RW and r.name != "ctrl":
                regs[r.name] = Signal(r.width, name=f"reg_{r.name}")
        enable = Signal()
        clear_strobe = Signal()
        stop_strobe = Signal()
        for r in P.ENGINE_REGISTERS:
            port = getattr(eng, r.engine)
            m.d.comb += port.eq(regs[r.name][:len(port)])
        m.d.comb += [eng.enable.eq(enable), eng.clear.eq(clear_strobe)]

        link_counters = {name: Signal(32, name=name) for name in
                         ("rx_ok", "rx_bad", "rx_overrun", "rx_uart_err")}
        cnt = link_counters
        with m.If(urx.overrun):
            m.d.sync += cnt["rx_overrun"].eq(cnt["rx_overrun"] + 1)
        with m.If(urx.error):
            m.d.sync += cnt["rx_uart_err"].eq(cnt["rx_uart_err"] + 1)

        # ---------------------------------------------------------------- replay
        replay_left = Signal(16)
        replay_done = Signal(32)
        replay_cycles = Signal(32)
        replay_timing = Signal()    # REPLAY started, store or engine not yet done
        rptr = Signal(range(self.STORE_DEPTH))
        out_valid = Signal()        # store.rdata holds a word for the engine
        replay_busy = Signal()
        m.d.comb += replay_busy.eq((replay_left != 0) | out_valid)
        replay_start = Signal()
        replay_epochs = Signal(16)

        # ---------------------------------------------------------------- status
        status = Signal(3)
        m.d.comb += status.eq(Cat(eng.idle, eng.overflow, replay_busy))
        bad_seen = Signal()
        m.d.comb += self.leds.eq(Cat(enable, replay_busy, eng.overflow, bad_seen))

        # Counter high words, latched when the low word is read (the DECODE of READ_REG below),
        # so the two halves of a running counter come from the same clock.
        counter_hi = {name: Signal(min(32, len(getattr(eng, name)) - 32), name=f"{name}_hi_latch")
                      for name in P.COUNTERS if len(getattr(eng, name)) > 32}

        def read_value(addr):
            """(valid, value) of register `addr` as combinational expressions."""
            value = Signal(32)
            valid = Signal()
            with m.Switch(addr):
                for r in P.REGISTERS:
                    with m.Case(r.addr):
                        m.d.comb += valid.eq(1)
                        if r.name == "id":
                            m.d.comb += value.eq(P.ID_MAGIC)
                        elif r.name.startswith("param_"):
                            const = {"param_w": W, "param_d_max": self.D_MAX,
                                     "param_b_max": self.B_MAX,
                                     "param_buf_depth": self.BUF_DEPTH,
                                     "param_store_depth": self.STORE_DEPTH,
                                     "param_max_payload": self.max_payload,
                                     "param_clk_hz": self.clk_freq,
                                     "param_divisor": self.divisor}[r.name]
                            m.d.comb += value.eq(const)
                        elif r.name == "caps":
                            m.d.comb += value.eq(P.caps_value(getattr(eng, "L2", True),
                                                              getattr(eng, "ARCH_CODE", 0)))
                        elif r.name == "ctrl":
                            m.d.comb += value.eq(enable)
                        elif r.name == "status":
                            m.d.comb += value.eq(status)
                        elif r.name == "replay_done":
                            m.d.comb += value.eq(replay_done)
                        elif r.name == "replay_cycles":
                            m.d.comb += value.eq(replay_cycles)
                        elif r.name in link_counters:
                            m.d.comb += value.eq(link_counters[r.name])
                        elif r.engine in P.COUNTERS and r.part == 1:
                            if r.engine in counter_hi:      # else the counter has no high word
                                m.d.comb += value.eq(counter_hi[r.engine])
                        elif r.engine in P.COUNTERS:
                            m.d.comb += value.eq(getattr(eng, r.engine)[:32])
                        else:
                            m.d.comb += value.eq(regs[r.name])
            return valid, value

        # ---------------------------------------------------------------- command unit
        info = frx.o_frame.payload
        seq = Signal(8)
        cmd = Signal(8)
        length = Signal(16)
        resp_cmd = Signal(8)
        resp_status = Signal(8)
        resp_len = Signal(16)       # payload bytes of the response (status + data)
        last_seq = Signal(9, init=0x100)   # bit 8 set: no effect command executed yet

        idx = Signal(16)            # payload byte index
        primed = Signal()           # memory read of byte idx issued last cycle
        arg = Signal(40)            # first five payload bytes, little endian
        acc = Signal(max(W, 32))    # word being assembled
        nb = Signal(range(max(wbytes, 4) + 1))
        rdata32 = Signal(32)
        k = Signal(3)               # byte within rdata32 being sent
        words_left = Signal(16)
        maddr = Signal(range(self.D_MAX))
        mwait = Signal(range(8 + 2))
        m.d.comb += frx.rd_addr.eq(idx)

        reg_addr = arg[0:8]
        reg_wvalue = arg[8:40]
        rvalid, rvalue = read_value(reg_addr)

        # The engine's input: replay words or STREAM words from the command unit.
        push_valid = Signal()
        push_ready = Signal()
        with m.If(replay_busy):
            m.d.comb += [eng.i_stream.valid.eq(out_valid), eng.i_stream.payload.eq(store.rdata)]
        with m.Else():
            m.d.comb += [eng.i_stream.valid.eq(push_valid), eng.i_stream.payload.eq(acc[:W]),
                         push_ready.eq(eng.i_stream.ready)]

        # Store port: the command unit writes (STORE) only while replay is not busy.
        store_we = Signal()
        store_wptr = regs["store_wptr"]
        store_len = regs["store_len"]
        replay_adv = Signal()
        m.d.comb += replay_adv.eq(~out_valid | eng.i_stream.ready)
        with m.If(store_we):
            m.d.comb += [store.addr.eq(store_wptr), store.wdata.eq(acc[:W]), store.we.eq(1)]
        with m.Else():
            m.d.comb += [store.addr.eq(rptr), store.re.eq(replay_adv & (replay_left != 0))]

        # The board's own time for a replay, free of the host's polling latency.
        with m.If(replay_start):
            m.d.sync += [replay_timing.eq(1), replay_cycles.eq(0)]
        with m.Elif(replay_timing):
            m.d.sync += replay_cycles.eq(replay_cycles + 1)
            with m.If(~replay_busy & eng.idle):
                m.d.sync += replay_timing.eq(0)

        with m.If(replay_start):
            m.d.sync += [replay_left.eq(replay_epochs), replay_done.eq(0), rptr.eq(0)]
        with m.Elif(stop_strobe):
            m.d.sync += [replay_left.eq(0), out_valid.eq(0)]
        with m.Elif(replay_adv):
            m.d.sync += out_valid.eq(replay_left != 0)
            with m.If(replay_left != 0):
                with m.If(rptr == store_len - 1):
                    m.d.sync += [rptr.eq(0), replay_left.eq(replay_left - 1),
                                 replay_done.eq(replay_done + 1)]
                with m.Else():
                    m.d.sync += rptr.eq(rptr + 1)

        C = P.Command
        S = P.Status

        def respond(status_value, data_len=0):
            m.d.sync += [resp_status.eq(status_value), resp_len.eq(1 + data_len), idx.eq(0)]
            m.next = "RESP"

        def respond_ok_effect():
            m.d.sync += last_seq.eq(seq)
            respond(S.OK)

        with m.FSM(name="cmd"):
            with m.State("IDLE"):
                with m.If(frx.o_frame.valid):
                    m.d.sync += [seq.eq(info.seq), cmd.eq(info.cmd), length.eq(info.length),
                                 resp_cmd.eq(info.cmd | P.ACK), idx.eq(0), primed.eq(0),
                                 arg.eq(0)]
                    with m.If(info.ok):
                        m.d.sync += cnt["rx_ok"].eq(cnt["rx_ok"] + 1)
                        m.next = "ARGS"
                    with m.Else():
                        m.d.sync += [cnt["rx_bad"].eq(cnt["rx_bad"] + 1), bad_seen.eq(1),
                                     resp_cmd.eq(C.NAK | P.ACK), resp_status.eq(S.BAD_FRAME),
                                     resp_len.eq(1)]
                        m.next = "RESP"

            with m.State("ARGS"):
                # Read up to five payload bytes into `arg` (2 clocks per byte: the buffer's
                # read port is synchronous).
                with m.If((idx == length) | (idx == 5)):
                    m.d.sync += primed.eq(0)
                    m.next = "DECODE"
                with m.Elif(~primed):
                    m.d.sync += primed.eq(1)
                with m.Else():
                    m.d.sync += [arg.word_select(idx[:3], 8).eq(frx.rd_data), idx.eq(idx + 1),
                                 primed.eq(0)]

            with m.State("DECODE"):
                # The protocol's one list of commands with a side effect (retry rule).
                is_effect = Signal()
                for c in sorted(P.EFFECT_COMMANDS):
                    with m.If(cmd == c):
                        m.d.comb += is_effect.eq(1)
                n_words = Signal(16)
                m.d.comb += n_words.eq(length >> log2_wbytes)
                model_count = arg[16:32]
                model_base = arg[0:16]
                n_model_w = Signal(16)
                m.d.comb += n_model_w.eq((length - 2) >> 2)
                with m.If(is_effect & ~last_seq[8] & (last_seq[:8] == seq)):
                    respond(S.DUPLICATE)
                with m.Elif(cmd == C.PING):
                    m.d.sync += last_seq.eq(0x100)
                    respond(S.OK)
                with m.Elif(cmd == C.READ_REG):
                    with m.If(length != 1):
                        respond(S.BAD_LEN)
                    with m.Elif(~rvalid):
                        respond(S.BAD_ADDR)
                    with m.Else():
                        m.d.sync += [rdata32.eq(rvalue), words_left.eq(1)]
                        for name, hi in counter_hi.items():
                            with m.If(reg_addr == P.COUNTERS[name][0].addr):
                                m.d.sync += hi.eq(getattr(eng, name)[32:32 + len(hi)])
                        respond(S.OK, 4)
                with m.Elif(cmd == C.WRITE_REG):
                    with m.If(length != 5):
                        respond(S.BAD_LEN)
                    with m.Else():
                        m.next = "WRITE_REG"
                with m.Elif((cmd == C.STREAM) | (cmd == C.STORE)):
                    whole_words = (length[:log2_wbytes] == 0) if log2_wbytes else Const(1, 1)
                    with m.If((length == 0) | ~whole_words):
                        respond(S.BAD_LEN)
                    with m.Elif(replay_busy):
                        respond(S.BUSY)
                    with m.Elif((cmd == C.STREAM) & ~enable):
                        respond(S.BUSY)
                    with m.Elif((cmd == C.STORE) & (store_wptr + n_words > self.STORE_DEPTH)):
                        respond(S.BAD_ADDR)
                    with m.Else():
                        m.d.sync += [idx.eq(0), nb.eq(0), primed.eq(0), acc.eq(0)]
                        m.next = "WORD_BYTES"
                with m.Elif(cmd == C.REPLAY):
                    with m.If(length != 2):
                        respond(S.BAD_LEN)
                    with m.Elif(replay_busy | ~enable):
                        respond(S.BUSY)
                    with m.Elif((store_len == 0) | (store_len > self.STORE_DEPTH)):
                        respond(S.BAD_ADDR)
                    with m.Else():
                        m.d.comb += [replay_start.eq(1), replay_epochs.eq(arg[0:16])]
                        respond_ok_effect()
                with m.Elif(cmd == C.READ_MODEL):
                    with m.If(length != 4):
                        respond(S.BAD_LEN)
                    with m.Elif((model_count == 0)
                                | (model_count > (self.max_payload - 1) // 4)):
                        respond(S.BAD_LEN)
                    with m.Elif(model_base + model_count > self.D_MAX):
                        respond(S.BAD_ADDR)
                    with m.Elif(~eng.idle | replay_busy):
                        respond(S.BUSY)
                    with m.Else():
                        m.d.sync += [maddr.eq(model_base), words_left.eq(model_count)]
                        respond(S.OK, model_count << 2)
                with m.Elif(cmd == C.WRITE_MODEL):
                    with m.If((length < 6) | (length[:2] != 2)):
                        respond(S.BAD_LEN)
                    with m.Elif(model_base + n_model_w > self.D_MAX):
                        respond(S.BAD_ADDR)
                    with m.Elif(~eng.idle | replay_busy):
                        respond(S.BUSY)
                    with m.Else():
                        m.d.sync += [maddr.eq(model_base), idx.eq(2), nb.eq(0), primed.eq(0),
                                     acc.eq(0)]
                        m.next = "WORD_BYTES"
                with m.Else():
                    respond(S.BAD_CMD)

            with m.State("WRITE_REG"):
                with m.Switch(reg_addr):
                    for r in P.REGISTERS:
                        if r.access is not P.Access.RW:
                            continue
                        with m.Case(r.addr):
                            if r.name == "ctrl":
                                m.d.sync += enable.eq(reg_wvalue[0])
                                m.d.comb += [clear_strobe.eq(reg_wvalue[1]),
                                             stop_strobe.eq(reg_wvalue[2])]
                                with m.If(reg_wvalue[1]):
                                    m.d.sync += bad_seen.eq(0)
                            else:
                                m.d.sync += regs[r.name].eq(reg_wvalue[:r.width])
                            respond_ok_effect()
                    with m.Default():
                        respond(S.BAD_ADDR)

            # Assemble one word (W bits for STREAM/STORE, 32 for WRITE_MODEL) from the payload.
            word_bytes = Signal(range(9))
            m.d.comb += word_bytes.eq(Mux(cmd == C.WRITE_MODEL, 4, wbytes))
            with m.State("WORD_BYTES"):
                with m.If(idx == length):
                    respond_ok_effect()
                with m.Elif(~primed):
                    m.d.sync += primed.eq(1)
                with m.Else():
                    m.d.sync += [acc.word_select(nb, 8).eq(frx.rd_data), idx.eq(idx + 1),
                                 primed.eq(0)]
                    with m.If(nb == word_bytes - 1):
                        m.d.sync += nb.eq(0)
                        m.next = "WORD_DONE"
                    with m.Else():
                        m.d.sync += nb.eq(nb + 1)

            with m.State("WORD_DONE"):
                with m.If(cmd == C.STREAM):
                    m.d.comb += push_valid.eq(1)
                    with m.If(push_ready):
                        m.next = "WORD_BYTES"
                with m.Elif(cmd == C.STORE):
                    m.d.comb += store_we.eq(1)
                    m.d.sync += store_wptr.eq(store_wptr + 1)
                    m.next = "WORD_BYTES"
                with m.Else():
                    m.d.comb += [eng.model_addr.eq(maddr), eng.model_wdata.eq(acc[:32]),
                                 eng.model_we.eq(1)]
                    m.d.sync += maddr.eq(maddr + 1)
                    m.next = "WORD_BYTES"

            # Response: header bytes, then data (READ_REG value or model words).
            with m.State("RESP"):
                hdr = Signal(8)
                with m.Switch(idx[:3]):
                    with m.Case(0):
                        m.d.comb += hdr.eq(seq)
                    with m.Case(1):
                        m.d.comb += hdr.eq(resp_cmd)
                    with m.Case(2):
                        m.d.comb += hdr.eq(resp_len[:8])
                    with m.Case(3):
                        m.d.comb += hdr.eq(resp_len[8:])
                    with m.Default():
                        m.d.comb += hdr.eq(resp_status)
                m.d.comb += [ftx.i_stream.valid.eq(1), ftx.i_stream.payload.data.eq(hdr),
                             ftx.i_stream.payload.last.eq((idx == 4) & (resp_len == 1))]
                with m.If(ftx.i_stream.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 4):
                        with m.If(resp_len == 1):
                            m.next = "DONE"
                        with m.Elif(resp_cmd == (C.READ_MODEL | P.ACK)):
                            m.d.sync += mwait.eq(eng.MODEL_READ_LATENCY)
                            m.next = "MODEL_READ"
                        with m.Else():
                            m.d.sync += k.eq(0)
                            m.next = "DATA"

            with m.State("MODEL_READ"):
                m.d.comb += eng.model_addr.eq(maddr)
                with m.If(mwait != 0):
                    m.d.sync += mwait.eq(mwait - 1)
                with m.Else():
                    m.d.sync += [rdata32.eq(eng.model_rdata), maddr.eq(maddr + 1), k.eq(0)]
                    m.next = "DATA"

            with m.State("DATA"):
                m.d.comb += [ftx.i_stream.valid.eq(1),
                             ftx.i_stream.payload.data.eq(rdata32.word_select(k[:2], 8)),
                             ftx.i_stream.payload.last.eq((k == 3) & (words_left == 1))]
                with m.If(ftx.i_stream.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 3):
                        m.d.sync += words_left.eq(words_left - 1)
                        with m.If(words_left == 1):
                            m.next = "DONE"
                        with m.Else():
                            m.d.sync += mwait.eq(eng.MODEL_READ_LATENCY)
                            m.next = "MODEL_READ"

            with m.State("DONE"):
                m.d.comb += frx.o_frame.ready.eq(1)
                m.next = "IDLE"
        return m
