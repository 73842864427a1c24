"""Host driver of the board system: the same code for the Verilator simulation and the FPGA.

`Device` speaks the framed protocol of `zipml.hw.protocol` over any `Transport`: stop-and-wait,
one command in flight, resend on NAK or timeout (the board acknowledges a repeated effect
command as DUPLICATE without doing it twice). Above it: configure the engine registers, upload
packed words (streaming, or once into the sample store and replay), read the model and counters.
"""

from __future__ import annotations

import time

import numpy as np

from zipml.host.backend_engine import (board_build, check_register, check_regs, engine_job_for,
                                       train_engine)
from zipml.host.transport import SerialTransport, SimTransport
from zipml.hw import protocol as P
from zipml.hw.boards import BOARDS, board_spec
from zipml.reference import store as feed_model
from zipml.reference.golden import EngineConfig, EngineResult

__all__ = ["Device", "DeviceError", "DeviceTimeout", "LinkStats", "DeviceRunner", "train_sim",
           "train_board", "board_baud", "sim_transport_for"]

C, S = P.Command, P.Status


class DeviceError(RuntimeError):
    """The board answered a command with an error status, or is not a zipml board."""


class DeviceTimeout(DeviceError):
    """No valid answer after all retries."""


class LinkStats:
    """Bytes and frames the driver moved; ``payload`` counts stream/store data bytes only."""

    def __init__(self):
        self.tx_bytes = self.rx_bytes = self.payload = 0
        self.commands = self.resends = self.naks = self.bad_rx = 0

    def as_dict(self):
        return dict(vars(self))


#: payload bytes of a board-bound data frame at first: long frames are worth it only on a line
#: known to be clean (`Device._send_words`)
FIRST_FRAME = 64


class Device:
    """A zipml board behind a transport.

    Parameters
    ----------
    transport : zipml.host.transport.Transport
    timeout : float
        Seconds to wait for each answer before resending (simulated seconds in simulation).
    retries : int
        Resends of one command before `DeviceTimeout`.

    Attributes
    ----------
    params : dict
        The board's build read at open: ``W``, ``D_MAX``, ``B_MAX``, ``BUF_DEPTH``,
        ``STORE_DEPTH``, ``max_payload``, ``clk_hz``, ``divisor`` (the ``param_*`` registers)
        and, from register ``caps``, ``L2`` (bool), ``ARCH`` (``parallel`` or ``serial``),
        ``COUNTER_BITS`` (the engine counters wrap modulo ``2**COUNTER_BITS``: 48, or 32 on
        the iCEBreaker), ``STALL`` (whether ``stall_cycles`` is counted), ``LINK_BITS`` (the
        link health counters wrap modulo ``2**LINK_BITS``: 16, or 8 on the iCEBreaker) and
        ``READBACK`` (whether the configuration registers read back; not on the iCEBreaker).
    written : dict
        The last value this host wrote to each register (`write_reg`).
    stats : LinkStats

    Raises
    ------
    DeviceError
        At open: not a zipml board, another protocol version, an engine architecture this host
        does not know, or a UART rate other than the transport's.
    """

    def __init__(self, transport, timeout=0.05, retries=4, reset=True):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        # The seqs the board may hold as its last executed effect command (it compares a new
        # effect command's seq with that one only, hw/protocol.py EFFECT_COMMANDS): an effect
        # command is never numbered with one of them, or the board would take it for a resend.
        self._board_last = set()
        self._parser = P.FrameParser()
        self._pending = []
        self.written = {}
        self.ping()
        ident = self.read_reg("id")
        if ident != P.ID_MAGIC:
            raise DeviceError(f"not a zipml board or another protocol version: id register "
                              f"{ident:#010x}, expected {P.ID_MAGIC:#010x}")
        self.params = {
            "W": self.read_reg("param_w"),
            "D_MAX": self.read_reg("param_d_max"),
            "B_MAX": self.read_reg("param_b_max"),
            "BUF_DEPTH": self.read_reg("param_buf_depth"),
            "STORE_DEPTH": self.read_reg("param_store_depth"),
            "max_payload": self.read_reg("param_max_payload"),
            "clk_hz": self.read_reg("param_clk_hz"),
            "divisor": self.read_reg("param_divisor"),
        }
        try:
            self.params.update(P.decode_caps(self.read_reg("caps")))
        except ValueError as e:
            raise DeviceError(str(e)) from None
        self.W = self.params["W"]
        clk, div = self.params["clk_hz"], self.params["divisor"]
        baud = getattr(transport, "baud", None)
        # A UART tolerates a few percent; past the bitstream's own 2% the link drops bytes.
        if baud and abs(baud - clk / div) > 0.02 * clk / div:
            raise DeviceError(f"the bitstream's UART runs at {clk / div:.0f} baud ({clk} Hz / "
                              f"{div}), the port at {baud}: open it at {round(clk / div)} baud "
                              f"(--baud)")
        if reset:
            self.reset()

    # ------------------------------------------------------------------ transactions
    def _receive(self, until):
        """Next frame from the board, or None once `now` passes ``until`` (a line that keeps
        sending noise must not hold an attempt open)."""
        while not self._pending:
            left = until - self.now()
            if left <= 0:
                return None
            data = self.transport.read(min(self.timeout, left))
            if not data:
                return None
            self.stats.rx_bytes += len(data)
            bad = self._parser.bad
            self._pending += self._parser.feed(data)
            self.stats.bad_rx += self._parser.bad - bad
        return self._pending.pop(0)

    def transact(self, cmd, payload=b""):
        """Send one command and return its response data (after the status byte).

        Raises
        ------
        DeviceTimeout
            No answer (or only NAKs) after ``retries`` resends.
        DeviceError
            The board answered with an error status.
        """
        cmd = C(cmd)
        effect = cmd in P.EFFECT_COMMANDS
        if effect and len(self._board_last) > 128:
            self.ping()                                 # many unanswered: make the board forget
        seq = self._seq
        while effect and seq in self._board_last:
            seq = (seq + 1) & 0xFF
        self._seq = (seq + 1) & 0xFF
        if effect:
            # unanswered, it may have run: the board's last is then this seq or the one before
            self._board_last.add(seq)
        frame = P.encode_frame(seq, cmd, payload)
        self.stats.commands += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resends += 1
            self.transport.write(frame)
            self.stats.tx_bytes += len(frame)
            until = self.now() + self.timeout
            while True:
                resp = self._receive(until)
                if resp is None:
                    break                               # timeout: resend
                if resp.cmd == C.NAK | P.ACK:
                    self.stats.naks += 1
                    break                               # the board saw a bad frame: resend
                if resp.seq != seq or resp.cmd != cmd | P.ACK or not resp.payload:
                    continue                            # a late answer to an earlier attempt
                status = resp.payload[0]
                if status in (S.OK, S.DUPLICATE):
                    if effect:
                        self._board_last = {seq}
                    elif cmd == C.PING:
                        self._board_last = set()        # PING makes the board forget it
                    return resp.payload[1:]
                if effect:
                    self._board_last.discard(seq)       # refused: the board did not record it
                try:
                    name = S(status).name
                except ValueError:
                    name = f"unknown status {status}"
                raise DeviceError(f"{cmd.name} failed: {name} ({_HINTS.get(status, '')})")
        raise DeviceTimeout(f"{cmd.name}: no valid answer after {self.retries + 1} tries of "
                            f"{self.timeout} s each (is the board powered, programmed with a "
                            f"zipml bitstream and at {self.transport.baud} baud?)")

    # ------------------------------------------------------------------ registers
    def ping(self):
        self.transact(C.PING)

    @staticmethod
    def _reg(name):
        try:
            return P.REGISTER_BY_NAME[name]
        except KeyError:
            raise ValueError(f"unknown register {name!r}; known: "
                             f"{', '.join(P.REGISTER_BY_NAME)}") from None

    def read_reg(self, name):
        """Register ``name``'s value. A build without readback (``params["READBACK"]``
        False, register ``caps``) reads its configuration registers
        (`zipml.hw.protocol.CONFIG_REGISTERS`) as 0: reading one there is refused
        (``written`` holds what this host wrote)."""
        r = self._reg(name)
        if r.name in P.CONFIG_REGISTERS and not getattr(self, "params", {}).get("READBACK", True):
            raise ValueError(f"register {r.name!r} is not read back by this build (register "
                             f"caps): what this host wrote is Device.written[{r.name!r}]")
        return int.from_bytes(self.transact(C.READ_REG, bytes([r.addr])), "little")

    def write_reg(self, name, value):
        """Write register ``name`` (checked against its width and the build's options);
        ``written[name]`` keeps the value."""
        r = self._reg(name)
        value = int(value)
        self._check_write(r, value)
        self.transact(C.WRITE_REG, bytes([r.addr]) + value.to_bytes(4, "little"))
        self.written[r.name] = value

    def _check_write(self, r, value):
        """Writable, fits, and not ignored by this build (`zipml.host.backend_engine
        .check_register`, the judgement golden and rtl apply to a board's build too)."""
        if r.access is P.Access.WO:         # a write strobe: only its width to check
            if not 0 <= value <= r.mask:
                raise ValueError(f"register {r.name!r} is {r.width} bits: {value} does not fit")
            return
        check_register(r, value, self.params)

    def engine_config(self):
        """The board's engine build as a `zipml.reference.golden.EngineConfig`, for building
        jobs that fit it (`zipml.reference.engine_job.EngineJob.build` refuses a d, B or
        mode-1 buffer the build cannot take)."""
        p = self.params
        return EngineConfig(W=p["W"], D_MAX=p["D_MAX"], B_MAX=p["B_MAX"], BUF_DEPTH=p["BUF_DEPTH"],
                            ARCH=p["ARCH"])

    def check_job(self, config, regs):
        """Refuse, before anything is sent, a job built for another engine or with a register
        this build cannot honour (`_check_write`). ``config`` is the job's `EngineConfig`,
        ``regs`` its `EngineRegs`."""
        p = self.params
        mine = (p["W"], p["D_MAX"], p["B_MAX"], p["BUF_DEPTH"], p["ARCH"])
        theirs = (config.W, config.D_MAX, config.B_MAX, config.BUF_DEPTH, config.ARCH)
        if mine != theirs:
            raise DeviceError(f"the board's engine is W, D_MAX, B_MAX, BUF_DEPTH, ARCH = {mine}, "
                              f"the job was built for {theirs}")
        check_regs(regs, self.params)

    def configure(self, **regs):
        """Write engine registers by name (``q``, ``mode``, ``d``, ``step``, ...)."""
        for name, value in regs.items():
            self.write_reg(name, value)

    def set_feed(self, fregs):
        """The store feed's registers (`zipml.reference.store.FeedRegs`: ``p``, ``round``):
        ``store_p`` and ``store_round``. Write them only between replays."""
        self.write_reg("store_p", int(fregs.p))
        self.write_reg("store_round", int(fregs.round))

    def set_seed(self, seed):
        """Load the store feed's generators from a 64-bit seed (``seed_lo``, then ``seed_hi``,
        whose write loads them). A seed that makes a generator's state 0 is refused
        (`zipml.reference.store.check_seed`)."""
        seed = feed_model.check_seed(seed, self.W)
        self.write_reg("seed_lo", seed & 0xFFFFFFFF)
        self.write_reg("seed_hi", seed >> 32)

    def set_ctrl(self, enable=True, clear=False, stop=False):
        self.write_reg("ctrl", (P.CTRL_ENABLE if enable else 0) | (P.CTRL_CLEAR if clear else 0)
                       | (P.CTRL_STOP if stop else 0))

    def reset(self):
        """Bring the board to a known state whatever a previous host left (a crash, Ctrl-C
        mid-stream): disable the engine, stop a replay and drop the words on their way, clear
        the engine (its pass, counters and overflow flag). The model and the store keep
        their contents; the next job writes what it needs."""
        self.set_ctrl(enable=False, clear=True, stop=True)

    def status(self):
        s = self.read_reg("status")
        return {"idle": bool(s & P.STATUS_IDLE), "overflow": bool(s & P.STATUS_OVERFLOW),
                "replay": bool(s & P.STATUS_REPLAY)}

    def read_counter(self, name):
        """Engine counter ``name`` (``cycles``, ``samples``, ``words``, ``stall_cycles``),
        modulo ``2**params["COUNTER_BITS"]``; None for ``stall_cycles`` on a build that does
        not count it (``params["STALL"]``).

        The low word first: its read latches the high word on the board, so the value is the
        counter at one clock even while the engine runs. A build with counters of at most 32
        bits has no high word (it reads 0): only the low word is read."""
        if name == "stall_cycles" and not self.params.get("STALL", True):
            return None
        lo, hi = P.COUNTERS[name]
        low = self.read_reg(lo.name)
        if self.params.get("COUNTER_BITS", P.COUNTER_BITS_FULL) <= 32:
            return low
        return low | self.read_reg(hi.name) << 32

    def now(self):
        """Seconds on a clock that runs with the board: the simulation's clocks (a transport
        with ``cycles`` and ``clk_freq``), else the host's monotonic clock."""
        cycles = getattr(self.transport, "cycles", None)
        clk = getattr(self.transport, "clk_freq", None)
        if cycles is not None and clk:
            return cycles / clk
        return time.monotonic()

    def unwrap(self, value, seconds):
        """A counter of clocks read modulo ``2**COUNTER_BITS``, made whole: the value
        congruent to it nearest to ``seconds`` (the host's measure of the same time, good to
        far better than the wrap: 2**32 clocks are 89 s at 48 MHz)."""
        bits = self.params.get("COUNTER_BITS", P.COUNTER_BITS_FULL)
        if value is None or bits >= P.COUNTER_BITS_FULL:
            return value
        span = 1 << bits
        estimate = seconds * self.params["clk_hz"]
        return value + span * max(0, round((estimate - value) / span))

    def counters(self):
        """Engine counters (modulo ``2**COUNTER_BITS``; ``stall_cycles`` None when the build
        does not count it) and link health, as plain ints."""
        out = {name: self.read_counter(name) for name in P.COUNTERS}
        out["overflow"] = self.status()["overflow"]
        for name in ("rx_ok", "rx_bad", "rx_overrun", "rx_uart_err", "replay_done"):
            out[name] = self.read_reg(name)
        return out

    # ------------------------------------------------------------------ data
    def _word_bytes(self, words):
        w = np.asarray(words)
        if w.ndim != 1:
            raise ValueError(f"words must be a 1-D array, got shape {w.shape}")
        if w.size and (not np.issubdtype(w.dtype, np.integer)):
            raise ValueError(f"words must be integers, got dtype {w.dtype}")
        w = w.astype(np.uint64)
        if self.W < 64 and w.size and int(w.max()) >> self.W:
            raise ValueError(f"a word does not fit in W={self.W} bits")
        return w.astype(f"<u{self.W // 8}").tobytes()

    def _send_words(self, cmd, words, progress=None):
        """Send ``words`` in frames of whole words. On a bad line a long frame rarely gets
        through whole, so the payload starts at `FIRST_FRAME` bytes, halves after a command
        that needed resends and grows by a quarter after one that went through at once, up to
        the board's ``max_payload`` (which a clean line reaches within a few frames). (A
        resend itself is the same frame: a shorter one under the same seq could be judged a
        DUPLICATE of its longer first try and lose words.)"""
        data = self._word_bytes(words)
        wb = self.W // 8
        most = (self.params["max_payload"] // wb) * wb
        step, i = max(wb, min(most, FIRST_FRAME // wb * wb)), 0
        while i < len(data):
            chunk = data[i:i + step]
            resends = self.stats.resends
            self.transact(cmd, chunk)
            i += len(chunk)
            self.stats.payload += len(chunk)
            step = max(wb, step // 2 // wb * wb) if self.stats.resends > resends \
                else min(most, step + max(wb, step // 4 // wb * wb))
            if progress is not None:
                progress(len(chunk) // wb)

    def stream(self, words, progress=None):
        """Push W-bit words into the running engine (streaming mode)."""
        self._send_words(C.STREAM, words, progress)

    def store(self, words, progress=None):
        """Write words into the sample store from address 0; sets ``store_len``."""
        n = np.asarray(words).size
        if n > self.params["STORE_DEPTH"]:
            raise ValueError(f"one epoch is {n} words, the sample store holds "
                             f"{self.params['STORE_DEPTH']}: train without --replay (streaming)")
        self.write_reg("store_wptr", 0)
        self._send_words(C.STORE, words, progress)
        self.write_reg("store_len", n)

    def replay(self, epochs, poll=None, on_epoch=None, timeout=None):
        """Replay the store ``epochs`` times and wait until the engine is idle.

        ``on_epoch(done)`` is called as the epoch count the board reports grows. ``poll``
        (seconds between status reads) defaults to an eighth of the time one epoch of
        ``store_len`` words takes at one word per clock. ``timeout`` (seconds of board time,
        `now`) defaults to 5 s plus 256 clocks per word replayed, far above the slowest
        engine's pace (the lane-serial one takes a word every ~W clocks): past it the replay
        is stopped, the engine cleared and `DeviceTimeout` raised. Returns the board's own
        clock count for the replay (register ``replay_cycles``).
        """
        if not 0 <= epochs < 1 << 16:
            raise ValueError(f"epochs must be 0..65535 per replay, got {epochs}")
        store_len = (self.read_reg("store_len") if self.params.get("READBACK", True)
                     else self.written.get("store_len", 0))
        clk = self.params["clk_hz"]
        if poll is None:
            poll = max(1e-4, store_len / clk / 8)
        if timeout is None:
            timeout = 5.0 + 256 * epochs * store_len / clk
        self.transact(C.REPLAY, int(epochs).to_bytes(2, "little"))
        start = self.now()
        seen = 0
        while True:
            st = self.status()
            done = self.read_reg("replay_done")
            if on_epoch is not None and done != seen:
                on_epoch(done)
            seen = done
            if not st["replay"] and st["idle"]:
                return self.read_reg("replay_cycles")
            if self.now() - start > timeout:
                self.reset()
                raise DeviceTimeout(f"replay of {epochs} epochs not done after {timeout:.3g} s "
                                    f"({done} done): stopped and cleared")
            self._wait(poll)

    def _wait(self, seconds):
        idle = getattr(self.transport, "idle", None)
        if idle is not None:
            idle(seconds)
        else:
            time.sleep(seconds)

    def wait_idle(self, timeout=5.0, poll=0.001):
        """Wait until the engine has finished every word it was given; `DeviceTimeout`
        after ``timeout`` seconds of board time (`now`: the polls' round trips count too)."""
        start = self.now()
        while not self.status()["idle"]:
            if self.now() - start > timeout:
                raise DeviceTimeout(f"engine not idle after {timeout} s")
            self._wait(poll)

    def read_model(self, d):
        """Model words 0..d-1 as int64 (signed 32-bit Q8.24 values)."""
        if not 0 < d <= self.params["D_MAX"]:
            raise ValueError(f"d must be 1..{self.params['D_MAX']}, got {d}")
        most = (self.params["max_payload"] - 1) // 4
        per, a, out = most, 0, []
        while a < d:
            # a read may be asked again with fewer words (it has no effect): on a bad line the
            # answers shrink while they need resends and grow back while they do not
            n = min(per, d - a)
            resends = self.stats.resends
            try:
                data = self.transact(C.READ_MODEL,
                                     a.to_bytes(2, "little") + n.to_bytes(2, "little"))
            except DeviceTimeout:
                if per == 1:
                    raise
                per = max(1, per // 2)
                continue
            if len(data) != 4 * n:
                raise DeviceError(f"READ_MODEL returned {len(data)} bytes for {n} words")
            out.append(np.frombuffer(data, dtype="<i4"))
            a += n
            per = max(1, per // 2) if self.stats.resends > resends else min(most, per + per // 4 + 1)
        return np.concatenate(out).astype(np.int64)

    def write_model(self, words):
        """Write model words from address 0 (engine must be idle)."""
        w = np.asarray(words, dtype=np.int64)
        if w.ndim != 1 or w.size > self.params["D_MAX"]:
            raise ValueError(f"model must be 1-D with at most D_MAX={self.params['D_MAX']} words")
        if w.size and (w.min() < -2**31 or w.max() >= 2**31):
            raise ValueError("model words must be signed 32-bit")
        per = (self.params["max_payload"] - 2) // 4
        for a in range(0, w.size, per):
            part = w[a:a + per].astype("<i4").tobytes()
            self.transact(C.WRITE_MODEL, a.to_bytes(2, "little") + part)


_HINTS = {
    S.BAD_CMD: "the board does not know this command: bitstream older than the host?",
    S.BAD_LEN: "payload length wrong for the command",
    S.BAD_ADDR: "address out of range or register read-only",
    S.BUSY: "engine not idle, not enabled, or a replay is running",
}


# ---------------------------------------------------------------------- backends
class DeviceRunner:
    """``runner(config, regs, words, init_model, epoch) -> EngineResult`` on a board, for
    `zipml.host.backend_engine.train_engine`: one epoch segment per call.

    Per call: write the registers that changed (the engine's, ``grid`` included), the model if
    it is not what the board holds, clear (loads the step, zeroes the counters), then STREAM
    the words, or with ``replay`` put them in the sample store once and REPLAY them (one epoch
    per call, so the model can be read between epochs), wait for idle, read counters and model.

    **Store mode** (docs/store.md): with a ``job`` (`zipml.reference.engine_job.EngineJob`) whose
    ``store_p`` > 0, the first call uploads ``job.stored_segment()`` and writes the feed's
    registers (``job.feed_regs()``); every call then loads the seed of its ``epoch``
    (``job.feed_seed(epoch)``), clears and REPLAYs the store once, and the board's store feed
    draws the epoch's codes. ``words`` is not sent then (it may be None; the golden equivalent
    is ``job.epoch_stream(epoch)``, which is what the engine receives). Otherwise the feed passes replayed words
    through (``store_p`` = 0).

    Attributes
    ----------
    uploads : int
        Segments written into the store.
    link_words : int
        W-bit words sent over the link (STREAM and STORE), once each.
    store_words : int
        W-bit words read from the store (``store_len`` per replayed epoch).
    """

    def __init__(self, device, replay=False, progress=None, job=None):
        self.device = device
        self.replay = replay
        self.progress = progress
        self._regs = {}
        self._model = None
        self._stored = None
        self.uploads = 0
        self.link_words = 0
        self.store_words = 0
        self.job = None
        if job is not None:
            self.bind(job)

    def bind(self, job):
        """Train ``job`` (store mode if ``job.store_p`` > 0): its stored segment and seed go to
        the board at the next call."""
        self.job = job
        self._fed = None

    @property
    def store_mode(self):
        return self.job is not None and int(getattr(self.job, "store_p", 0) or 0) > 0

    def _write(self, name, value):
        if self._regs.get(name) != value:
            self.device.write_reg(name, value)
            self._regs[name] = value

    def _upload(self, words):
        if self._stored is None or not np.array_equal(self._stored, words):
            self.device.store(words, progress=self.progress)
            self._stored = words.copy()
            self.uploads += 1
            self.link_words += int(words.size)

    def __call__(self, config, regs, words, init_model=None, epoch=0):
        dev = self.device
        dev.check_job(config, regs)
        store_mode = self.store_mode
        if store_mode:
            fregs = self.job.feed_regs()
            fregs.check(regs)
        dev.set_ctrl(enable=False)
        for r in P.ENGINE_REGISTERS:
            self._write(r.name, int(getattr(regs, r.engine)))
        init = (np.zeros(regs.d, dtype=np.int64) if init_model is None
                else np.asarray(init_model, dtype=np.int64))
        if self._model is None or not np.array_equal(self._model, init):
            dev.write_model(init)
        replay = self.replay or store_mode
        if store_mode:
            if self._fed is not self.job:
                # the stored codes once per job
                self._upload(np.asarray(self.job.stored_segment(), dtype=np.uint64))
                self._write("store_p", int(fregs.p))
                self._write("store_round", int(fregs.round))
                self._fed = self.job
            # the generators afresh every epoch, from the epoch's own seed, as the golden
            # feed draws it (so a resumed run draws what the uninterrupted one did)
            dev.set_seed(self.job.feed_seed(epoch))
        elif replay:
            self._write("store_p", 0)
            self._upload(np.asarray(words, dtype=np.uint64))
        start = dev.now()
        if replay:
            dev.set_ctrl(enable=True, clear=True)
            replay_cycles = dev.replay(1)
            self.store_words += int(self._stored.size)
        else:
            words = np.asarray(words, dtype=np.uint64)
            dev.set_ctrl(enable=True, clear=True)
            dev.stream(words, progress=self.progress)
            self.link_words += int(words.size)
            dev.wait_idle()
        c = dev.counters()
        self._model = dev.read_model(regs.d)
        # Streaming: the engine's enabled cycles (link bound; a build with 32-bit counters
        # wraps them, so they are unwrapped with the host's own time of the epoch). Replay:
        # the board's clocks from REPLAY to idle (memory speed), not the host's polling
        # latency after it.
        cycles = replay_cycles if replay else dev.unwrap(c["cycles"], dev.now() - start)
        return EngineResult(model_words=self._model.copy(), samples=c["samples"],
                            words=c["words"], overflow=c["overflow"], cycles=cycles,
                            stall_cycles=c["stall_cycles"])


def _train_on(device, prepared, options, progress, config, backend):
    """`train_engine` with a `DeviceRunner` bound to the job (store mode when its
    ``store_p`` > 0). ``extra`` gains ``link_bits`` (every word sent over the link: the
    upload, or all streamed words, times W) and ``store_bits`` (words read from the store,
    times W, summed over the epochs; 0 when streaming), and ``link`` (byte counts)."""
    if config is None:
        config = device.engine_config()
    store_depth = device.params["STORE_DEPTH"]
    runner = DeviceRunner(device, replay=bool(getattr(options, "replay", False)),
                          job=engine_job_for(prepared, options, config, store_depth))
    try:
        result = train_engine(prepared, options, progress, runner=runner, config=config,
                              caps=device.params, backend=backend, store_depth=store_depth)
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C or SIGTERM (the CLI turns it into SystemExit): leave the engine stopped and
        # the link idle, so the next run starts clean even without its own reset
        try:
            device.reset()
        except (DeviceError, OSError):
            pass
        raise
    link = device.stats.as_dict()
    wire = link["tx_bytes"] + link["rx_bytes"]
    link["payload_share"] = link["payload"] / wire if wire else None
    link["uploads"] = runner.uploads
    result.extra["link"] = link
    result.extra["link_bits"] = runner.link_words * device.W
    result.extra["store_bits"] = runner.store_words * device.W
    return result


def sim_transport_for(config=None, *, board=None, **kwargs):
    """The simulated board system of a build (`zipml.host.backend_engine.board_build`):
    ``board``'s engine, L2, clock, baud and sample store, or with no board golden's config (or
    ``config``) with L2 at 12 MHz and 3 Mbaud, so ``sim`` == ``golden`` for the same build.
    Keywords override `SimTransport`'s parameters (e.g. ``STORE_DEPTH``, ``gap_prob``)."""
    build = board_build(board, config)
    c = build.config
    params = dict(clk_freq=build.clk_hz, baud=build.baud, STORE_DEPTH=build.store_depth,
                  L2=build.L2, **dict(build.system))
    params.update(kwargs)
    return SimTransport(W=c.W, D_MAX=c.D_MAX, B_MAX=c.B_MAX, BUF_DEPTH=c.BUF_DEPTH, ARCH=c.ARCH,
                        **params)


def train_sim(prepared, options, progress=None, config=None, transport=None):
    """``--backend sim [--board NAME]``: the board system (UART, frames, engine, store) in
    Verilator.

    Without ``transport`` it simulates the build of ``options.board``
    (`zipml.host.backend_engine.board_build`; default golden's config, or ``config``), so
    ``--backend sim`` and ``--backend golden`` with the same ``--board`` train the same integer
    model bit for bit; a job that build cannot do is refused before the simulation is built.
    With a ``transport`` the job is built for ``config``, else ``options.board``'s engine, else
    the engine the board reports. In store mode (``options.replay``, or by default on the
    floor grid when the data fits the build's store: `zipml.host.backend_engine
    .engine_job_for`) the stored segment is uploaded once and the board's store feed draws
    every epoch's codes (docs/store.md, docs/link.md). ``extra`` adds ``sim_cycles``
    (simulated clocks), ``clk_hz`` and ``baud`` (the simulated system's clock and UART), and
    `_train_on`'s ``link_bits``, ``store_bits`` and ``link``.
    """
    board = getattr(options, "board", None)
    own = transport is None
    if own or board is not None:
        build = board_build(board, config)
        config = build.config
    if own:
        # what Device.check_job would refuse after connecting, before building the simulation
        check_regs(engine_job_for(prepared, options, config, build.store_depth).regs,
                   build.caps)
        transport = sim_transport_for(config, board=board)
    try:
        device = Device(transport)
        result = _train_on(device, prepared, options, progress, config, "sim")
        result.extra.update(sim_cycles=transport.cycles, clk_hz=device.params["clk_hz"],
                            baud=device.params["clk_hz"] / device.params["divisor"])
        return result
    finally:
        if own:
            transport.close()


def board_baud(baud=None, board=None):
    """The rate to open a board's serial port at: it must be the one the bitstream was built
    with (`Device` checks it against the board's ``param_clk_hz / param_divisor`` at open).

    ``baud`` when given; else the default of ``board`` (``zipml.hw.boards.board_spec(board)
    .baud``, what ``zipml build --board`` builds with); else the default all boards share.

    Raises
    ------
    ValueError
        ``baud`` not a positive integer, ``board`` unknown, or neither given while the boards'
        defaults differ.
    """
    if baud is not None:
        if isinstance(baud, bool) or not isinstance(baud, (int, np.integer)) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, got {baud!r}")
        return int(baud)
    if board is not None:
        return board_spec(board).baud
    rates = {name: spec.baud for name, spec in BOARDS.items()}
    if len(set(rates.values())) > 1:
        raise ValueError(f"the boards' bitstreams default to different rates "
                         f"({', '.join(f'{n} {b}' for n, b in rates.items())}): name the board "
                         f"(--board) or the rate (--baud)")
    return next(iter(rates.values()))


def train_board(prepared, options, progress=None, port=None, baud=None, timeout=0.5):
    """``--backend board --port PORT [--baud BAUD | --board NAME]``: the same driver over a
    serial port opened at `board_baud` (``baud``, ``options.board``).

    The engine is the bitstream's own build, read at connect (a bitstream built with other
    parameters than its board's defaults trains too); the board refuses a job it cannot do
    (`Device.check_job`) before any data is sent."""
    board = getattr(options, "board", None)
    port = port or getattr(options, "port", None)
    if not port:
        raise ValueError("--backend board needs --port (the FPGA board's serial device, e.g. "
                         "/dev/ttyUSB1 for the iCEBreaker)")
    with SerialTransport(port, board_baud(baud, board)) as transport:
        device = Device(transport, timeout=timeout)
        return _train_on(device, prepared, options, progress, None, "board")
