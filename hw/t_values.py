"""The T values of a pass (both engines): written in sample order, read by grad group.

docs/engine.md, "Scalar": the T_s of a pass's dot groups are kept in order, and grad group s
of the next pass uses T_s. The counter ``n_t`` says how many of the current set are written; a
grad group s may issue once ``s < n_t``. The parser starts a new set (``new_set``) when every
grad of the pass has read its T and no T of the pass can be written yet.
"""

from amaranth.hdl import Module, Signal, Array, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .model_mem import MW

__all__ = ["TValues"]


class TValues(wiring.Component):
    """The T set: ``depth`` values of 32 bits and the count ``n_t`` of those written.

    Parameters
    ----------
    depth : int
        Values held (``B_MAX`` registers, or 16 in block RAM).
    ram : bool
        False: flip-flops, the read registered (the parallel engine's: no read-during-write
        path); True: a block RAM whose read is transparent for the write (the serial
        engine's).

    Ports
    -----
    w_en : In(1)
        A T is out of the scalar stage: ``T[n_t] <= w_data``, ``n_t += 1``.
    w_data : In(signed(32))
    new_set : In(1)
        ``n_t <= 0`` (a write in the same cycle is the new set's first).
    clear : In(1)
        ``n_t <= 0``.
    r_addr : In(4)
        The group s whose T to read, every cycle.
    r_data : Out(signed(32))
        ``T[r_addr]`` one clock edge after the address (with ``ram``: a value written at that
        address in the address's cycle included).
    n_t : Out(range(16))

    Latency: read 1, write 1.
    """

    def __init__(self, depth, ram=False):
        self.depth, self.ram = depth, bool(ram)
        super().__init__({
            "w_en": In(1), "w_data": In(signed(MW)), "new_set": In(1), "clear": In(1),
            "r_addr": In(4), "r_data": Out(signed(MW)), "n_t": Out(range(16)),
        })

    def elaborate(self, platform):
        m = Module()
        n_t = self.n_t
        if self.ram:
            m.submodules.mem = mem = Memory(shape=signed(MW), depth=self.depth, init=[],
                                            attrs={"ram_style": "block"})
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=(wr,))
            m.d.comb += [rd.addr.eq(self.r_addr), rd.en.eq(1), self.r_data.eq(rd.data),
                         wr.addr.eq(n_t), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        else:
            T = Array(Signal(signed(MW), name=f"T{i}") for i in range(self.depth))
            m.d.sync += self.r_data.eq(T[self.r_addr])
            with m.If(self.w_en):
                m.d.sync += T[n_t].eq(self.w_data)
        with m.If(self.new_set):
            m.d.sync += n_t.eq(0)
        with m.If(self.w_en):
            m.d.sync += n_t.eq(n_t + 1)
        with m.If(self.clear):
            m.d.sync += n_t.eq(0)
        return m
