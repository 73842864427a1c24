"""Model memory: the d model words in block RAM, one row of W lanes per chunk.

The engine reads and writes whole chunks (W words of 32 bits, one row); the host reads and
writes single words through the model port while the engine is idle. One wide memory with a
32-bit write granularity serves both: a chunk write enables the active lanes, a host write one
lane.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ModelMemory", "MW"]

#: model word width (signed, Q8.24)
MW = 32


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
        Chunk to read.
    eng_ren : In(1)
        Read ``eng_raddr`` this cycle; ``eng_rdata`` holds the row one cycle later.
    eng_rdata : Out(ArrayLayout(signed(32), W))
        Row read (latency 1, registered inside the RAM). Not transparent: a read in the same
        cycle as a write to the same row returns the old row; the engine never does that.
    eng_waddr : In(range(C_MAX))
    eng_wen : In(W)
        Lane write enables of the chunk write (active lanes only).
    eng_wdata : In(ArrayLayout(signed(32), W))
    host_sel : In(1)
        1: the read port follows ``host_addr`` (the engine is not in a pass).
    host_addr : In(range(W * C_MAX))
        Word address j (lane ``j % W`` of row ``j // W``).
    host_we : In(1)
    host_wdata : In(signed(32))
    host_rdata : Out(signed(32))
        ``model[host_addr]`` ``HOST_READ_LATENCY`` = 3 clock edges after the address (RAM,
        register, lane multiplexer register); one address per cycle (pipelined).

    Engine writes take priority over host writes (the host writes only while idle).
    """

    HOST_READ_LATENCY = 3

    def __init__(self, W, C_MAX):
        if W < 1 or W & (W - 1):
            raise ValueError(f"W must be a power of two, got {W!r}")
        if C_MAX < 1:
            raise ValueError(f"C_MAX must be >= 1, got {C_MAX!r}")
        self.W, self.C_MAX = W, C_MAX
        row = data.ArrayLayout(signed(MW), W)
        super().__init__({
            "eng_raddr": In(range(C_MAX)), "eng_ren": In(1), "eng_rdata": Out(row),
            "eng_waddr": In(range(C_MAX)), "eng_wen": In(W), "eng_wdata": In(row),
            "host_sel": In(1), "host_addr": In(range(W * C_MAX)), "host_we": In(1),
            "host_wdata": In(signed(MW)), "host_rdata": Out(signed(MW)),
        })

    def elaborate(self, platform):
        m = Module()
        W, C_MAX = self.W, self.C_MAX
        lb = (W - 1).bit_length()
        m.submodules.mem = mem = Memory(shape=W * MW, depth=C_MAX, init=[])
        wp = mem.write_port(granularity=MW)
        rp = mem.read_port(transparent_for=())

        host_row = self.host_addr[lb:] if C_MAX > 1 else 0
        host_lane = self.host_addr[:lb] if W > 1 else 0

        with m.If(self.eng_wen.any()):
            m.d.comb += [wp.addr.eq(self.eng_waddr), wp.en.eq(self.eng_wen),
                         wp.data.eq(self.eng_wdata.as_value())]
        with m.Else():
            m.d.comb += [wp.addr.eq(host_row),
                         wp.en.eq(Mux(self.host_we, (Const(1, 1) << host_lane)[:W], 0)
                                   if W > 1 else self.host_we),
                         wp.data.eq(Cat(*([self.host_wdata] * W)))]

        m.d.comb += [rp.addr.eq(Mux(self.host_sel, host_row, self.eng_raddr)),
                     rp.en.eq(self.host_sel | self.eng_ren),
                     self.eng_rdata.eq(rp.data)]

        # Host read: the RAM output goes straight into a register (its clock-to-out is the
        # slowest thing on ECP5), then the W:1 lane multiplexer into host_rdata (latency 3).
        lane_r = Signal(range(W))
        lane_r2 = Signal(range(W))
        row_r = Signal(data.ArrayLayout(signed(MW), W))
        m.d.sync += [lane_r.eq(host_lane), lane_r2.eq(lane_r), row_r.eq(rp.data),
                     self.host_rdata.eq(row_r[lane_r2])]
        return m
