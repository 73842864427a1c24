"""ModelMemory: host port (pipelined reads at HOST_READ_LATENCY) and chunk port; RegisteredRAM's
ECP5 build (DP16KD instances with the output register)."""

import numpy as np
import pytest
from amaranth.hdl import Fragment, Instance
from amaranth.sim import Simulator

from zipml.hw.model_mem import ModelMemory, RegisteredRAM

pytestmark = pytest.mark.filterwarnings("error")


def test_model_memory_host_and_engine_ports():
    W, C_MAX = 8, 4
    rng = np.random.default_rng(0)
    words = rng.integers(-(1 << 31), 1 << 31, size=W * C_MAX)
    row = rng.integers(-(1 << 31), 1 << 31, size=W)
    lanes = rng.integers(0, 2, size=W)
    dut = ModelMemory(W, C_MAX)
    lat = ModelMemory.HOST_READ_LATENCY
    out = {}

    async def host_read(ctx, n):
        vals = []
        ctx.set(dut.host_sel, 1)
        for j in range(n + lat):
            if j < n:
                ctx.set(dut.host_addr, j)
            if j >= lat:
                vals.append(ctx.get(dut.host_rdata))
            await ctx.tick()
        return np.array(vals)

    async def bench(ctx):
        ctx.set(dut.host_sel, 1)
        for j, v in enumerate(words):
            ctx.set(dut.host_addr, j)
            ctx.set(dut.host_wdata, int(v))
            ctx.set(dut.host_we, 1)
            await ctx.tick()
        ctx.set(dut.host_we, 0)
        out["first"] = await host_read(ctx, W * C_MAX)
        # engine side: rows 2, 0, 3 on consecutive cycles come out ENG_READ_LATENCY later
        ctx.set(dut.host_sel, 0)
        order = [2, 0, 3]
        out["rows"] = []
        for c in range(len(order) + ModelMemory.ENG_READ_LATENCY):
            if c < len(order):
                ctx.set(dut.eng_raddr, order[c])
            await ctx.tick()
            if c + 1 >= ModelMemory.ENG_READ_LATENCY and len(out["rows"]) < len(order):
                out["rows"].append([ctx.get(dut.eng_rdata[i]) for i in range(W)])
        # then write row 2 on some lanes; a host write in the same cycle loses
        ctx.set(dut.eng_we, 1)
        ctx.set(dut.eng_waddr, 2)
        ctx.set(dut.eng_wen, int(sum(int(b) << i for i, b in enumerate(lanes))))
        for i in range(W):
            ctx.set(dut.eng_wdata[i], int(row[i]))
        ctx.set(dut.host_addr, 1)
        ctx.set(dut.host_wdata, 12345)
        ctx.set(dut.host_we, 1)
        await ctx.tick()
        ctx.set(dut.eng_we, 0)
        ctx.set(dut.host_we, 0)
        out["second"] = await host_read(ctx, W * C_MAX)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(out["first"], words)
    for r, got in zip([2, 0, 3], out["rows"]):
        np.testing.assert_array_equal(got, words[r * W:(r + 1) * W])
    want = words.copy()
    want[2 * W:3 * W] = np.where(lanes == 1, row, words[2 * W:3 * W])
    np.testing.assert_array_equal(out["second"], want)


class _ECP5:
    """Stands in for an ECP5 platform: `RegisteredRAM` only asks for ``family``."""
    family = "ecp5"


def _brams(dut):
    frag = Fragment.get(dut, platform=_ECP5())
    return [sub for sub, _name, _src in frag.subfragments if isinstance(sub, Instance)]


@pytest.mark.parametrize("width,depth,gran,n_bram,cw", [
    (32 * 32, 128, 32, 64, 18),         # the ULX3S model RAM: two x18 blocks per lane
    (32, 16384, None, 32, 1),           # the ULX3S code buffer: one x1 block per bit
    (20, 3000, None, 5, 4),
])
def test_registered_ram_ecp5_uses_dp16kd_output_register(width, depth, gran, n_bram, cw):
    brams = _brams(RegisteredRAM(width, depth, gran))
    assert len(brams) == n_bram
    for b in brams:
        assert b.type == "DP16KD"
        assert b.parameters["REGMODE_B"] == "OUTREG"
        assert b.parameters["DATA_WIDTH_A"] == b.parameters["DATA_WIDTH_B"] == cw


def test_registered_ram_rejects_bad_granularity():
    with pytest.raises(ValueError, match="granularity"):
        RegisteredRAM(40, 16, granularity=32)
