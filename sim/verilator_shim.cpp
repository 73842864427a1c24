// Generic extern "C" shim between a Verilated model and Python (ctypes), used by
// zipml.sim.verilator.  Nothing here knows which design it drives: the per-design part
// (model class, port switch) is the generated header zm_ports.h, written from the Verilog
// port list.  Ports are addressed by index into that list.
//
// Why a hand-written shim and not pyverilator: docs/simulation.md (measured ~3x faster, no
// patches to a 2021 package, and loops such as streaming run here in C++ instead of one
// Python call per cycle).
//
// Clocking: one cycle = clk 0, eval (combinational logic settles on the inputs set since the
// last edge), clk 1, eval (rising edge).  Inputs set before zm_tick are therefore sampled by
// the next rising edge, as in Amaranth's simulator.

#include <cstdint>
#include <cstring>
#include <memory>

#include "verilated.h"
#include "zm_ports.h"  // Model typedef, ZM_HAS_CLK/ZM_HAS_RST, zm_port_set64/get64/setw/getw
#if ZM_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Model> top;
    uint64_t cycles = 0;   // rising edges since construction
    uint64_t time = 0;     // half cycles, for the VCD
#if ZM_TRACE
    std::unique_ptr<VerilatedVcdC> vcd;
#endif
};

inline void dump(Sim* s) {
#if ZM_TRACE
    if (s->vcd) s->vcd->dump(s->time);
#endif
    s->time++;
}

// clk 0 and settle: after this, outputs reflect the inputs set so far (valid before the edge).
inline void settle(Sim* s) {
#if ZM_HAS_CLK
    zm_clk_set(s->top.get(), 0);
#endif
    s->top->eval();
    dump(s);
}

inline void edge(Sim* s) {
#if ZM_HAS_CLK
    zm_clk_set(s->top.get(), 1);
#endif
    s->top->eval();
    dump(s);
    s->cycles++;
}

// splitmix64: a tiny, seedable generator so gap patterns are reproducible across platforms.
inline uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline bool draw(uint64_t& state, double prob) {
    // 53 random bits -> [0, 1)
    return prob > 0.0 && (double)(splitmix(state) >> 11) * (1.0 / 9007199254740992.0) < prob;
}

}  // namespace

extern "C" {

void* zm_new(const char* vcd_path) {
    Sim* s = new Sim;
    s->ctx.reset(new VerilatedContext);
    s->ctx->randReset(0);  // deterministic: uninitialised state is 0 (Amaranth sets inits anyway)
#if ZM_TRACE
    if (vcd_path && vcd_path[0]) s->ctx->traceEverOn(true);
#endif
    s->top.reset(new Model{s->ctx.get()});
#if ZM_TRACE
    if (vcd_path && vcd_path[0]) {
        s->vcd.reset(new VerilatedVcdC);
        s->top->trace(s->vcd.get(), 99);
        s->vcd->open(vcd_path);
    }
#else
    (void)vcd_path;
#endif
    s->top->eval();
    return s;
}

void zm_free(void* h) {
    Sim* s = static_cast<Sim*>(h);
#if ZM_TRACE
    if (s->vcd) s->vcd->close();
#endif
    s->top->final();
    delete s;
}

int zm_has_trace(void) { return ZM_TRACE; }

uint64_t zm_cycles(void* h) { return static_cast<Sim*>(h)->cycles; }

void zm_eval(void* h) { static_cast<Sim*>(h)->top->eval(); }

void zm_set(void* h, int port, uint64_t value) {
    zm_port_set64(static_cast<Sim*>(h)->top.get(), port, value);
}

uint64_t zm_get(void* h, int port) {
    return zm_port_get64(static_cast<Sim*>(h)->top.get(), port);
}

void zm_set_wide(void* h, int port, const uint32_t* words) {
    zm_port_setw(static_cast<Sim*>(h)->top.get(), port, words);
}

void zm_get_wide(void* h, int port, uint32_t* words) {
    zm_port_getw(static_cast<Sim*>(h)->top.get(), port, words);
}

void zm_tick(void* h, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    for (uint64_t i = 0; i < n; i++) {
        settle(s);
        edge(s);
    }
}

// Tick until output `port` equals `value` (checked before each edge).  Returns the edges
// ticked, or -1 if max_cycles passed without it.
int64_t zm_wait(void* h, int port, uint64_t value, uint64_t max_cycles) {
    Sim* s = static_cast<Sim*>(h);
    for (uint64_t i = 0; i <= max_cycles; i++) {
        settle(s);
        if (zm_port_get64(s->top.get(), port) == value) return (int64_t)i;
        if (i == max_cycles) break;
        edge(s);
    }
    return -1;
}

// Stream source (amaranth.lib.stream rules): drive words[0..n) on payload/valid, one transfer
// per cycle where valid & ready at the rising edge.  Every cycle with no word on the bus, with
// probability gap_prob, the source idles (valid 0) for that cycle; once valid is up it stays up with the
// same payload until the word is taken, as the stream rules require.  Ends with valid 0.
// stats[0] = words transferred, stats[1] = cycles the source held a word the sink did not take,
// stats[2] = gap cycles.  Returns the cycles spent, or -1 if max_cycles passed first.
int64_t zm_stream(void* h, int payload, int valid, int ready, const uint64_t* words, uint64_t n,
                  uint64_t seed, double gap_prob, uint64_t max_cycles, uint64_t* stats) {
    Sim* s = static_cast<Sim*>(h);
    Model* t = s->top.get();
    uint64_t rng = seed;
    uint64_t i = 0, cyc = 0, held = 0, gaps = 0;
    bool up = false;  // valid asserted and not yet taken
    int64_t result = 0;
    while (i < n) {
        if (cyc >= max_cycles) { result = -1; break; }
        if (!up) {
            if (draw(rng, gap_prob)) {
                zm_port_set64(t, valid, 0);
                gaps++;
                settle(s);
                edge(s);
                cyc++;
                continue;
            }
            zm_port_set64(t, payload, words[i]);
            zm_port_set64(t, valid, 1);
            up = true;
        }
        settle(s);
        bool taken = zm_port_get64(t, ready) != 0;
        edge(s);
        cyc++;
        if (taken) { i++; up = false; } else { held++; }
    }
    zm_port_set64(t, valid, 0);
    stats[0] = i;
    stats[1] = held;
    stats[2] = gaps;
    return result < 0 ? result : (int64_t)cyc;
}

// Read n words of a synchronous memory port: addr = start + k, data sampled `latency` edges
// later (0 = combinational).
void zm_read_seq(void* h, int addr, int data, int latency, uint64_t start, uint64_t n,
                 uint64_t* out) {
    Sim* s = static_cast<Sim*>(h);
    Model* t = s->top.get();
    for (uint64_t k = 0; k < n; k++) {
        zm_port_set64(t, addr, start + k);
        for (int e = 0; e < latency; e++) { settle(s); edge(s); }
        settle(s);
        out[k] = zm_port_get64(t, data);
    }
}

// Write n words through a memory port with a write enable (one word per cycle).
void zm_write_seq(void* h, int addr, int data, int we, uint64_t start, uint64_t n,
                  const uint64_t* in) {
    Sim* s = static_cast<Sim*>(h);
    Model* t = s->top.get();
    zm_port_set64(t, we, 1);
    for (uint64_t k = 0; k < n; k++) {
        zm_port_set64(t, addr, start + k);
        zm_port_set64(t, data, in[k]);
        settle(s);
        edge(s);
    }
    zm_port_set64(t, we, 0);
}

// Play a waveform on input `port`: levels[k] for clocks[k] cycles, k = 0..n-1 (a serial line,
// a strobe pattern).  The last level stays on the port.
void zm_play(void* h, int port, const uint64_t* levels, const uint64_t* clocks, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    Model* t = s->top.get();
    for (uint64_t k = 0; k < n; k++) {
        zm_port_set64(t, port, levels[k]);
        for (uint64_t c = 0; c < clocks[k]; c++) { settle(s); edge(s); }
    }
}

// UART 8N1 receiver on output `port` with `div` clocks per bit: up to max_bytes bytes into out.
// Waits at most first_timeout cycles for the first start bit and idle_timeout cycles for each
// later one; stops after a byte equal to stop_byte (if stop_byte < 256) that follows a
// different byte.  Bits are sampled mid-bit.  Returns the bytes received, or -(k+1) on a
// framing error after k bytes (stop bit low or start bit gone at mid-bit).
int64_t zm_uart_read(void* h, int port, uint64_t div, uint8_t* out, uint64_t max_bytes,
                     uint64_t first_timeout, uint64_t idle_timeout, uint64_t stop_byte) {
    Sim* s = static_cast<Sim*>(h);
    Model* t = s->top.get();
    uint64_t k = 0;
    while (k < max_bytes) {
        uint64_t limit = k ? idle_timeout : first_timeout, waited = 0;
        for (;;) {
            settle(s);
            if (zm_port_get64(t, port) == 0) break;
            if (waited++ >= limit) return (int64_t)k;
            edge(s);
        }
        for (uint64_t c = 0; c < div / 2; c++) { settle(s); edge(s); }
        settle(s);
        if (zm_port_get64(t, port) != 0) return -(int64_t)k - 1;
        uint8_t b = 0;
        for (int i = 0; i < 8; i++) {
            for (uint64_t c = 0; c < div; c++) { settle(s); edge(s); }
            settle(s);
            b |= (uint8_t)((zm_port_get64(t, port) & 1) << i);
        }
        for (uint64_t c = 0; c < div; c++) { settle(s); edge(s); }
        settle(s);
        if (zm_port_get64(t, port) != 1) return -(int64_t)k - 1;
        out[k++] = b;
        if (stop_byte < 256 && b == stop_byte && k > 1 && out[k - 2] != stop_byte) break;
    }
    return (int64_t)k;
}

}  // extern "C"
