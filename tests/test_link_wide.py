"""The board system at W = 32 (the ULX3S width) in Amaranth's simulator, through its UART pins:
words of several bytes are assembled in order, a payload that is not whole words is refused,
and the model port moves signed words. The host side is `zipml.hw.protocol`'s encoder/parser.
"""

import numpy as np
from amaranth.sim import Simulator

from zipml.hw import protocol as P
from zipml.hw.soc import System

DIV = 4


def _run(frames, W=32, system=System):
    """Send each frame, collect the answer frames (one per command)."""
    dut = system(12_000_000, 3_000_000, W=W, D_MAX=64, B_MAX=2, BUF_DEPTH=64, STORE_DEPTH=64)
    answers = []

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(8)
        parser = P.FrameParser()
        for frame in frames:
            for b in frame:
                for level in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                    ctx.set(dut.rx, level)
                    await ctx.tick().repeat(DIV)
            got = []
            while not got:
                await ctx.tick().until(dut.tx == 0)
                await ctx.tick().repeat(DIV // 2)
                b = 0
                for i in range(8):
                    await ctx.tick().repeat(DIV)
                    b |= ctx.get(dut.tx) << i
                await ctx.tick().repeat(DIV)
                assert ctx.get(dut.tx) == 1, "stop bit"
                got = parser.feed(bytes([b]))
            answers.extend(got)

    sim = Simulator(dut)
    sim.add_clock(1 / 12e6)
    sim.add_testbench(host)
    sim.run()
    return answers


def test_wide_words_model_and_lengths():
    C, S = P.Command, P.Status
    model = np.array([-2**31, 2**31 - 1, -5, 0x12345678], dtype=np.int64)
    frames = [
        P.encode_frame(1, C.WRITE_MODEL, (3).to_bytes(2, "little") + model.astype("<i4").tobytes()),
        P.encode_frame(2, C.READ_MODEL, (3).to_bytes(2, "little") + (4).to_bytes(2, "little")),
        P.encode_frame(3, C.STREAM, bytes(6)),          # 1.5 words of 4 bytes
        P.encode_frame(4, C.STREAM, bytes(8)),          # whole words, engine not enabled
        P.encode_frame(5, C.STORE, bytes(range(8))),    # two words into the store
        P.encode_frame(6, C.READ_REG, bytes([P.REGISTER_BY_NAME["store_wptr"].addr])),
        P.encode_frame(7, C.WRITE_MODEL, (62).to_bytes(2, "little") + bytes(12)),  # past D_MAX
    ]
    a = _run(frames)
    assert [(f.seq, f.cmd) for f in a] == [(k + 1, f.cmd | P.ACK) for k, f in
                                          enumerate(P.FrameParser().feed(b"".join(frames)))]
    assert a[0].payload == bytes([S.OK])
    assert a[1].payload[0] == S.OK
    assert np.array_equal(np.frombuffer(a[1].payload[1:], dtype="<i4"), model)
    assert a[2].payload == bytes([S.BAD_LEN])
    assert a[3].payload == bytes([S.BUSY])
    assert a[4].payload == bytes([S.OK])
    assert a[5].payload == bytes([S.OK]) + (2).to_bytes(4, "little")
    assert a[6].payload == bytes([S.BAD_ADDR])


def test_caps_names_the_engines_build():
    """``caps`` reports what the system's engine says of itself: the architecture code it
    declares (``ARCH_CODE``, 1 = serial) and whether it has the L2 shrink."""
    from zipml.hw.engine import Engine

    class CodedEngine(Engine):
        ARCH_CODE = 1

    class CodedSystem(System):
        def make_engine(self):
            return CodedEngine(W=self.W, D_MAX=self.D_MAX, B_MAX=self.B_MAX,
                               BUF_DEPTH=self.BUF_DEPTH, L2=False)

    caps = P.REGISTER_BY_NAME["caps"].addr
    a = _run([P.encode_frame(1, P.Command.READ_REG, bytes([caps]))], system=CodedSystem)
    value = int.from_bytes(a[0].payload[1:], "little")
    assert a[0].payload[0] == P.Status.OK
    assert value == 1 << P.CAPS_ARCH_SHIFT            # architecture 1, no L2 bit
    assert P.decode_caps(value) == {"L2": False, "ARCH": "serial", "COUNTER_BITS": 48,
                                    "STALL": True, "LINK_BITS": 16, "READBACK": True}
