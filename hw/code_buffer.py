"""The code buffer: the plane words a pass streams, replayed by the next pass (both engines).

In mode 1 and on the floor grid the grad groups of pass t are the dot groups of pass t-1
(docs/engine.md, "Stream layout"): pass t writes its dot words into one half of the buffer and
reads the grad words from the half pass t-1 wrote. The parser owns the half bit and the two
word counters (it resets them with each header); `CodeBuffer` turns them into RAM addresses.
"""

from amaranth.hdl import Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .model_mem import RegisteredRAM

__all__ = ["CodeBuffer"]


class CodeBuffer(wiring.Component):
    """Two halves of ``depth // 2`` words of W bits: one written, the other read.

    Parameters
    ----------
    W : int
        Word width (the stream's).
    depth : int
        Words in both halves (``BUF_DEPTH``, > 0).
    registered : bool
        True: a `RegisteredRAM` (the block RAM's output register, read latency 2; the parallel
        engine's); False: a plain `Memory` read port (latency 1; the serial engine's).

    Ports
    -----
    half : In(1)
        The half this pass writes (``wh``); it reads the other.
    w_addr : In(range(depth // 2))
        Word index in the written half.
    w_data : In(W)
    w_en : In(1)
        Write ``w_data`` at ``w_addr``. The write is made a cycle later from registers, so the
        caller's issue logic does not drive the RAM's write enable; the next pass reads the
        word two cycles after ``w_en`` at the earliest.
    r_addr : In(range(depth // 2))
        Word index in the read half, read every cycle.
    r_data : Out(W)
        The word at ``r_addr`` ``LATENCY`` clock edges later.
    """

    def __init__(self, W, depth, registered=True):
        self.W, self.depth, self.registered = W, depth, bool(registered)
        self.LATENCY = RegisteredRAM.LATENCY if registered else 1
        half = max(depth // 2, 1)
        super().__init__({
            "half": In(1), "w_addr": In(range(half)), "w_data": In(W), "w_en": In(1),
            "r_addr": In(range(half)), "r_data": Out(W),
        })

    def elaborate(self, platform):
        m = Module()
        half = self.depth // 2
        if self.registered:
            m.submodules.ram = ram = RegisteredRAM(self.W, self.depth)
            wp_addr, wp_data, wp_en = ram.w_addr, ram.w_data, ram.w_en
            rp_addr, rp_data = ram.r_addr, ram.r_data
        else:
            m.submodules.ram = ram = Memory(shape=self.W, depth=self.depth, init=[])
            wp = ram.write_port()
            rp = ram.read_port(transparent_for=())
            wp_addr, wp_data, wp_en = wp.addr, wp.data, wp.en
            rp_addr, rp_data = rp.addr, rp.data
            m.d.comb += rp.en.eq(1)
        bw_addr = Signal.like(wp_addr)
        bw_data = Signal(self.W)
        bw_en = Signal()
        m.d.sync += [bw_addr.eq(Mux(self.half, half, 0) + self.w_addr), bw_data.eq(self.w_data),
                     bw_en.eq(self.w_en)]
        m.d.comb += [wp_addr.eq(bw_addr), wp_data.eq(bw_data), wp_en.eq(bw_en),
                     rp_addr.eq(Mux(self.half, 0, half) + self.r_addr), self.r_data.eq(rp_data)]
        return m
