"""Model memory: the d model words in block RAM, one row of W lanes per chunk.

The engine reads and writes whole chunks (W words of 32 bits, one row); the host reads and
writes single words through the model port while the engine is idle. One wide memory with a
32-bit write granularity serves both: a chunk write enables the active lanes, a host write one
lane.

`RegisteredRAM` is the block RAM under it (and under the engine's code buffer): a read port
that reads every cycle into an output register. On ECP5 it is built from ``DP16KD`` instances
with the block RAM's own output register (``REGMODE_B="OUTREG"``), because the clock-to-out of
a block RAM without it (5.8 ns on the LFE5U-85F) is the slowest path that a register right
after the RAM can still have; Yosys does not use that register for inferred memories.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, Array, ClockSignal, Instance, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .family import platform_family

__all__ = ["ModelMemory", "RegisteredRAM", "MW"]

# model word width (signed, Q8.24): the golden model's (docs/engine.md)
from ..reference.golden import MW  # noqa: E402

# DP16KD data widths (true dual port) by the depth they hold: (largest depth, width, address
# shift of the 14-bit address bus, whether AD[1:0] are byte enables)
_DP16KD_CONFIGS = ((1024, 18, 4, True), (2048, 9, 3, False), (4096, 4, 2, False),
                   (8192, 2, 1, False), (16384, 1, 0, False))


class RegisteredRAM(wiring.Component):
    """Simple dual-port block RAM whose read port reads every cycle into an output register.

    Parameters
    ----------
    width : int
        Bits per row.
    depth : int
        Rows.
    granularity : int or None
        Bits per write enable (``width`` must be a multiple); None: one enable for the row.

    Ports
    -----
    w_addr : In(range(depth))
    w_en : In(width // granularity)
        Write enables of the row's granules; the row is written at the clock edge.
    w_data : In(width)
    r_addr : In(range(depth))
        Read every cycle.
    r_data : Out(width)
        ``row[r_addr]`` ``LATENCY`` = 2 clock edges after the address (the read, the output
        register). A read in the cycle of a write to the same row returns the old row or, on
        ECP5, an undefined one: the users never read a row in the cycle they write it, or
        ignore the data.

    On a platform whose family has ``dp16kd_ram`` (`zipml.hw.family.Family`: ECP5), and
    ``depth`` <= 16384, the RAM is made of ``DP16KD`` instances (port A writes, port B reads,
    ``REGMODE_B="OUTREG"``); otherwise an inferred `Memory` and a register (simulation, iCE40).
    """

    LATENCY = 2

    def __init__(self, width, depth, granularity=None):
        self._MustUse__silence = True  # no "never used" warning for a rejected instance
        granularity = width if granularity is None else granularity
        if width < 1 or depth < 1 or granularity < 1 or width % granularity:
            raise ValueError(f"RegisteredRAM: width {width!r} must be a positive multiple of "
                             f"granularity {granularity!r}, depth {depth!r} positive")
        self._MustUse__silence = False
        self.width, self.depth, self.granularity = width, depth, granularity
        super().__init__({
            "w_addr": In(range(depth)), "w_en": In(width // granularity), "w_data": In(width),
            "r_addr": In(range(depth)), "r_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        family = platform_family(platform)
        if family is not None and family.dp16kd_ram and self.depth <= 16384:
            self._ecp5(m)
            return m
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wp = mem.write_port(granularity=self.granularity)
        rp = mem.read_port(transparent_for=())
        m.d.comb += [wp.addr.eq(self.w_addr), wp.en.eq(self.w_en), wp.data.eq(self.w_data),
                     rp.addr.eq(self.r_addr), rp.en.eq(1)]
        m.d.sync += self.r_data.eq(rp.data)
        return m

    def _ecp5(self, m):
        # One DP16KD per `cw` bits of a granule (a block never spans two write enables).
        _, cw, shift, byte_enables = next(c for c in _DP16KD_CONFIGS if self.depth <= c[0])
        addr_w = 14 - shift
        wa = Cat(self.w_addr, Const(0, addr_w - len(self.w_addr)))
        ra = Cat(self.r_addr, Const(0, addr_w - len(self.r_addr)))
        low = Const(3 if byte_enables else 0, shift)   # x18: AD[1:0] enable both bytes
        n = 0
        for g in range(len(self.w_en)):
            for lo in range(g * self.granularity, (g + 1) * self.granularity, cw):
                bits = min(cw, (g + 1) * self.granularity - lo)
                di = Cat(self.w_data[lo:lo + bits], Const(0, cw - bits))
                do = Signal(cw, name=f"do{n}")
                ports = {
                    "i_CLKA": ClockSignal(), "i_CEA": 1, "i_OCEA": 1, "i_RSTA": 0,
                    "i_WEA": self.w_en[g],
                    "i_CLKB": ClockSignal(), "i_CEB": 1, "i_OCEB": 1, "i_RSTB": 0, "i_WEB": 0,
                }
                adda = Cat(low, wa)
                addb = Cat(Const(0, shift), ra)
                for i in range(14):
                    ports[f"i_ADA{i}"] = adda[i]
                    ports[f"i_ADB{i}"] = addb[i]
                for i in range(3):
                    ports[f"i_CSA{i}"] = 0
                    ports[f"i_CSB{i}"] = 0
                for i in range(cw):
                    ports[f"i_DIA{i}"] = di[i]
                    ports[f"i_DIB{i}"] = 0
                    ports[f"o_DOB{i}"] = do[i]
                m.submodules[f"bram{n}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=cw, p_DATA_WIDTH_B=cw,
                    p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="AUTO",
                    **ports)
                m.d.comb += self.r_data[lo:lo + bits].eq(do[:bits])
                n += 1


class ModelMemory(wiring.Component):
    """Model words in one ``C_MAX`` x ``W*32`` block RAM with an engine and a host side.

    Parameters
    ----------
    W : int
        Lanes (words per row), a power of two.
    C_MAX : int
        Rows (chunks); the host address space is ``W * C_MAX`` words.

    Ports
    -----
    eng_raddr : In(range(C_MAX))
        Chunk to read; the RAM reads it every cycle while ``host_sel`` is 0.
    eng_rdata : Out(ArrayLayout(signed(32), W))
        The row ``ENG_READ_LATENCY`` = 2 clock edges after the address (the read, the RAM's
        output register). Not transparent: a read in the same cycle as a write to the same row
        returns the old row (or, on ECP5, garbage); the engine never uses such a read.
    eng_we : In(1)
        A chunk write this cycle (it has priority over a host write).
    eng_waddr : In(range(C_MAX))
    eng_wen : In(W)
        Lane write enables of the chunk write (active lanes only), with ``eng_we``.
    eng_wdata : In(ArrayLayout(signed(32), W))
    host_sel : In(1)
        1: the read port follows ``host_addr`` (the engine is not in a pass).
    host_addr : In(range(W * C_MAX))
        Word address j (lane ``j % W`` of row ``j // W``).
    host_we : In(1)
    host_wdata : In(signed(32))
    host_rdata : Out(signed(32))
        ``model[host_addr]`` ``HOST_READ_LATENCY`` = 4 clock edges after the address (RAM,
        output register, two lane multiplexer registers); one address per cycle (pipelined).

    Engine writes take priority over host writes (the host writes only while idle).
    """

    ENG_READ_LATENCY = RegisteredRAM.LATENCY
    HOST_READ_LATENCY = RegisteredRAM.LATENCY + 2

    def __init__(self, W, C_MAX):
        if W < 1 or W & (W - 1):
            raise ValueError(f"W must be a power of two, got {W!r}")
        if C_MAX < 1:
            raise ValueError(f"C_MAX must be >= 1, got {C_MAX!r}")
        self.W, self.C_MAX = W, C_MAX
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({
            "eng_raddr": In(range(C_MAX)), "eng_rdata": Out(row),
            "eng_we": In(1), "eng_waddr": In(range(C_MAX)), "eng_wen": In(W),
            "eng_wdata": In(row),
            "host_sel": In(1), "host_addr": In(range(W * C_MAX)), "host_we": In(1),
            "host_wdata": In(signed(MW)), "host_rdata": Out(signed(MW)),
        })

    def elaborate(self, platform):
        m = Module()
        W, C_MAX = self.W, self.C_MAX
        lb = (W - 1).bit_length()
        m.submodules.ram = ram = RegisteredRAM(W * MW, C_MAX, granularity=MW)

        host_row = self.host_addr[lb:] if C_MAX > 1 else 0
        host_lane = self.host_addr[:lb] if W > 1 else 0

        with m.If(self.eng_we):
            m.d.comb += [ram.w_addr.eq(self.eng_waddr), ram.w_en.eq(self.eng_wen),
                         ram.w_data.eq(self.eng_wdata.as_value())]
        with m.Else():
            m.d.comb += [ram.w_addr.eq(host_row),
                         ram.w_en.eq(Mux(self.host_we, (Const(1, 1) << host_lane)[:W], 0)
                                     if W > 1 else self.host_we),
                         ram.w_data.eq(Cat(*([self.host_wdata] * W)))]

        m.d.comb += [ram.r_addr.eq(Mux(self.host_sel, host_row, self.eng_raddr)),
                     self.eng_rdata.eq(ram.r_data)]

        # Host read: the W:1 lane multiplexer after the RAM's output register, in two registered
        # halves (by the low, then the high lane bits): latency 4.
        lane = [Signal(range(W), name=f"lane_r{i}") for i in range(3)]
        m.d.sync += [lane[0].eq(host_lane), lane[1].eq(lane[0]), lane[2].eq(lane[1])]
        lo = lb - lb // 2
        part = [Signal(signed(MW), name=f"part{j}") for j in range(W >> lo)]
        for j, p in enumerate(part):
            group = data.ArrayLayout(signed(MW), 1 << lo)(
                self.eng_rdata.as_value()[j * (MW << lo):(j + 1) * (MW << lo)])
            m.d.sync += p.eq(group[lane[1][:lo]] if lo else group[0])
        m.d.sync += self.host_rdata.eq(Array(part)[lane[2][lo:]] if lb - lo else part[0])
        return m
