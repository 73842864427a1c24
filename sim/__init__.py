"""Verilator harness: builds generated Verilog and steps it from Python."""
