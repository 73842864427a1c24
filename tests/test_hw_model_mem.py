"""ModelMemory: host port (pipelined reads at HOST_READ_LATENCY) and chunk port."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from zipml.hw.model_mem import ModelMemory

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
        # engine side: read row 2, then write row 2 on some lanes
        ctx.set(dut.host_sel, 0)
        ctx.set(dut.eng_raddr, 2)
        ctx.set(dut.eng_ren, 1)
        await ctx.tick()
        ctx.set(dut.eng_ren, 0)
        out["row"] = [ctx.get(dut.eng_rdata[i]) for i in range(W)]
        ctx.set(dut.eng_waddr, 2)
        ctx.set(dut.eng_wen, int(sum(int(b) << i for i, b in enumerate(lanes))))
        for i in range(W):
            ctx.set(dut.eng_wdata[i], int(row[i]))
        await ctx.tick()
        ctx.set(dut.eng_wen, 0)
        out["second"] = await host_read(ctx, W * C_MAX)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(out["first"], words)
    np.testing.assert_array_equal(out["row"], words[2 * W:3 * W])
    want = words.copy()
    want[2 * W:3 * W] = np.where(lanes == 1, row, words[2 * W:3 * W])
    np.testing.assert_array_equal(out["second"], want)
