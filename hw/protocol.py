"""The one definition of the host <-> board link: frames, commands, registers, status codes.

Pure Python, no Amaranth import: the gateware (`zipml.hw.frame`, `zipml.hw.soc`) and the host
(`zipml.host.transport`, `zipml.host.device`) both import this module, so the two sides cannot
drift (the Glasgow habit, docs/style.md). docs/link.md explains the choices.

Frame (both directions), before byte stuffing::

    seq u8 | cmd u8 | len u16 LE | payload[len] | crc u16 BE

On the wire every frame is ``FLAG + stuff(body) + FLAG``; inside the body the bytes ``FLAG``
and ``ESC`` are sent as ``ESC, byte ^ ESC_XOR`` (HDLC/PPP style), so a ``FLAG`` byte on the line
always delimits a frame and a receiver resynchronises on the next one after any garbage.

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over
``seq .. payload``, appended most significant byte first. Appended that way, the CRC of the whole
body including the CRC is 0, so the gateware checks a frame without knowing where its CRC
starts. Python's ``binascii.crc_hqx(data, 0xFFFF)`` computes exactly this CRC.

Responses: every well-formed command frame gets one response frame with the same ``seq`` and
``cmd | ACK``; its payload is a status byte followed by the command's data. A frame that fails
the length or CRC check is never acted on: it is counted (register ``rx_bad``) and answered by a
``NAK`` frame (cmd 0xFF) so the host resends without waiting for its timeout.
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass

from ..reference.golden import ARCHS

__all__ = [
    "FLAG", "ESC", "ESC_XOR", "HEADER_BYTES", "CRC_BYTES", "MAX_PAYLOAD", "VERSION", "ID_MAGIC",
    "ACK", "Command", "Status", "Access", "Register", "REGISTERS", "REGISTER_BY_NAME",
    "REGISTER_BY_ADDR", "ENGINE_REGISTERS", "CTRL_ENABLE", "CTRL_CLEAR", "CTRL_STOP",
    "STATUS_IDLE", "STATUS_OVERFLOW", "STATUS_REPLAY", "CAPS_L2", "CAPS_NO_STALL", "CAPS_NO_READBACK",
    "CAPS_ARCH_SHIFT", "CAPS_ARCH_BITS", "CAPS_COUNTER_SHIFT", "CAPS_COUNTER_FIELD",
    "CAPS_COUNTER_MAX", "CAPS_LINK_SHIFT", "CAPS_LINK_FIELD", "COUNTER_BITS_FULL",
    "LINK_BITS_FULL", "LINK_COUNTERS", "CONFIG_REGISTERS", "ARCH_NAMES", "caps_value", "decode_caps", "COUNTERS",
    "crc16", "stuff", "unstuff", "encode_frame", "Frame", "FrameError", "FrameParser",
    "EFFECT_COMMANDS",
]

FLAG = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
HEADER_BYTES = 4  # seq, cmd, len lo, len hi
CRC_BYTES = 2
# Payload bytes a frame may carry (both directions). 256 bytes of stream data per frame keep
# the 10-byte framing and 9-byte ack at ~7% of the wire, and fit one iCE40 EBR (+2 CRC bytes
# would not: the receive buffer is MAX_PAYLOAD + CRC_BYTES deep, which Yosys rounds to 512).
MAX_PAYLOAD = 256
# 2: counter high halves latched by the low half's read; register `caps`
# 3: the floor grid (register `grid`) and the store feed (`store_p`, `store_round`, the seed)
VERSION = 3
ID_MAGIC = 0x5A4D0000 | VERSION  # "ZM" << 16 | protocol version, register `id`

ACK = 0x80  # response cmd = command | ACK


class Command(enum.IntEnum):
    """Command codes (host -> board). Payload layouts, all little endian:

    ========== ====================================== ================================
    command    request payload                        response data (after status)
    ========== ====================================== ================================
    PING       none                                   none; also forgets the last seq
    READ_REG   addr u8                                value u32
    WRITE_REG  addr u8, value u32                     none
    STREAM     k words of W bits (W/8 bytes each)     none; sent after the engine took all
    STORE      k words of W bits                      none; written at ``store_wptr``
    REPLAY     epochs u16                             none; replay runs in the background
    READ_MODEL addr u16, count u16                    count words s32
    WRITE_MODEL addr u16, count words s32             none
    ========== ====================================== ================================
    """

    PING = 0x01
    READ_REG = 0x02
    WRITE_REG = 0x03
    STREAM = 0x04
    STORE = 0x05
    REPLAY = 0x06
    READ_MODEL = 0x07
    WRITE_MODEL = 0x08
    NAK = 0x7F  # response only, sent as NAK | ACK = 0xFF


# Commands with a side effect: a repeated seq (the host resending because our ACK was lost) is
# acknowledged with Status.DUPLICATE and not executed again. Reads are simply re-executed.
EFFECT_COMMANDS = frozenset({Command.WRITE_REG, Command.STREAM, Command.STORE, Command.REPLAY,
                             Command.WRITE_MODEL})


class Status(enum.IntEnum):
    """First payload byte of every response."""

    OK = 0
    BAD_CMD = 1     # unknown command code
    BAD_LEN = 2     # payload length wrong for the command (or not whole W-bit words)
    BAD_ADDR = 3    # register, model or store address out of range, or write to read-only
    BUSY = 4        # model access while the engine is not idle; STREAM/STORE during replay
    BAD_FRAME = 5   # (NAK only) CRC, length or overrun error: frame dropped, not acted on
    DUPLICATE = 6   # same seq as the last executed effect command: acknowledged, not repeated


class Access(enum.Enum):
    """``ro`` read only; ``rw`` held and read back; ``wo`` write only: a write acts (it is not
    held in a register of its own) and a read returns 0."""

    RO = "ro"
    RW = "rw"
    WO = "wo"


@dataclass(frozen=True)
class Register:
    """One 32-bit register of the board's register file.

    ``width`` is the number of meaningful low bits; writes keep only those, reads return 0
    above them (a read-only counter of the system wraps at its width). ``engine`` names
    the `zipml.hw.engine.Engine` port the register drives or reads (``None`` for registers of
    the system itself); ``part`` selects the 32-bit half of a wider engine counter: reading
    part 0 latches the counter's high bits, which part 1 then returns (`COUNTERS`).
    ``requires`` names the build option (a key of `decode_caps`) without which the engine
    ignores the register: a build without it treats the register as 0.
    """

    name: str
    addr: int
    width: int
    access: Access
    doc: str
    engine: str | None = None
    part: int = 0
    requires: str | None = None

    @property
    def mask(self):
        return (1 << self.width) - 1


_RO, _RW, _WO = Access.RO, Access.RW, Access.WO

# CTRL bits. clear and stop are strobes: they act on write and read back as 0.
CTRL_ENABLE = 1 << 0  # engine runs (its input is ready); 0 holds it
CTRL_CLEAR = 1 << 1   # engine clear strobe: counters, overflow, decay counter, pass state
CTRL_STOP = 1 << 2    # abort a replay after the word in flight

# STATUS bits.
STATUS_IDLE = 1 << 0          # engine idle: no pass in progress, nothing in flight
STATUS_OVERFLOW = 1 << 1      # engine sticky overflow
STATUS_REPLAY = 1 << 2        # sample store replay running

# CAPS: what this build can do beyond the numbers of the param_* registers.
CAPS_L2 = 1 << 0              # the engine has the L2 shrink (else `l2_shift` is ignored)
CAPS_NO_STALL = 1 << 1        # stall_cycles is not counted: stall_lo/stall_hi read 0
CAPS_NO_READBACK = 1 << 2     # the configuration registers (RW but ctrl) read 0, not their value
CAPS_ARCH_SHIFT = 8           # engine architecture code, bits 8..11
CAPS_ARCH_BITS = 4
CAPS_COUNTER_SHIFT = 16       # engine counter width, bits 16..21; 0 = COUNTER_BITS_FULL
CAPS_COUNTER_FIELD = 6
CAPS_COUNTER_MAX = (1 << CAPS_COUNTER_FIELD) - 1
CAPS_LINK_SHIFT = 24          # link health counter width, bits 24..28; 0 = LINK_BITS_FULL
CAPS_LINK_FIELD = 5
#: the engine counters' full width (`zipml.hw.engine.COUNTER_BITS`): a build that reads them
#: whole says 0 in the caps field (as every build before the field did)
COUNTER_BITS_FULL = 48
#: the link health counters' width in the register map (`LINK_COUNTERS`); a build may count
#: fewer bits (caps)
LINK_BITS_FULL = 16
#: engine architecture code -> name: the code is the index in `zipml.reference.golden.ARCHS`
#: (the one list); the engine class states its code as ``ARCH_CODE`` (default 0)
ARCH_NAMES = ARCHS


def caps_value(L2, arch_code, counter_bits=COUNTER_BITS_FULL, stall=True,
               link_bits=LINK_BITS_FULL, readback=True):
    """The ``caps`` register of a build with (``L2``, architecture code ``arch_code``), its
    engine counters ``counter_bits`` wide (they count modulo ``2**counter_bits``),
    ``stall_cycles`` counted or not, link health counters ``link_bits`` wide, and the
    configuration registers read back or not. A full build (48-bit engine counters, stall
    counted, 16-bit link counters, read back) has 0 in these fields, so its value is the one
    of the builds before them."""
    if not 0 <= arch_code < 1 << CAPS_ARCH_BITS:
        raise ValueError(f"architecture code must be 0..{(1 << CAPS_ARCH_BITS) - 1}, "
                         f"got {arch_code!r}")
    if not 1 <= counter_bits <= CAPS_COUNTER_MAX:
        raise ValueError(f"counter width must be 1..{CAPS_COUNTER_MAX}, got {counter_bits!r}")
    if not 1 <= link_bits <= LINK_BITS_FULL:
        raise ValueError(f"link counter width must be 1..{LINK_BITS_FULL}, got {link_bits!r}")
    width = 0 if counter_bits == COUNTER_BITS_FULL else counter_bits
    link = 0 if link_bits == LINK_BITS_FULL else link_bits
    return ((CAPS_L2 if L2 else 0) | (0 if stall else CAPS_NO_STALL)
            | (0 if readback else CAPS_NO_READBACK) | arch_code << CAPS_ARCH_SHIFT | width << CAPS_COUNTER_SHIFT
            | link << CAPS_LINK_SHIFT)


def decode_caps(value):
    """``{"L2": bool, "ARCH": name, "COUNTER_BITS": int, "STALL": bool, "LINK_BITS": int,
    "READBACK": bool}`` from a ``caps`` register value: ``COUNTER_BITS`` is the engine
    counters' width (they wrap modulo ``2**COUNTER_BITS``; up to 32 their ``*_hi`` registers
    read 0), ``STALL`` whether ``stall_cycles`` is counted, ``LINK_BITS`` the link health
    counters' width (they wrap modulo ``2**LINK_BITS``), ``READBACK`` whether the
    configuration registers (`CONFIG_REGISTERS`) read back their value (else 0).

    Raises
    ------
    ValueError
        For an architecture code this host does not know (a bitstream newer than the host).
    """
    code = value >> CAPS_ARCH_SHIFT & ((1 << CAPS_ARCH_BITS) - 1)
    if code >= len(ARCH_NAMES):
        raise ValueError(f"the board's engine architecture code {code} is unknown to this host "
                         f"(known: {', '.join(f'{i} {n}' for i, n in enumerate(ARCH_NAMES))}); "
                         f"update zipml")
    width = value >> CAPS_COUNTER_SHIFT & CAPS_COUNTER_MAX
    link = value >> CAPS_LINK_SHIFT & ((1 << CAPS_LINK_FIELD) - 1)
    return {"L2": bool(value & CAPS_L2), "ARCH": ARCH_NAMES[code],
            "COUNTER_BITS": width or COUNTER_BITS_FULL, "STALL": not value & CAPS_NO_STALL,
            "LINK_BITS": link or LINK_BITS_FULL, "READBACK": not value & CAPS_NO_READBACK}


def _counter(name, addr, engine, doc):
    """An engine counter wider than 32 bits as two registers: the low word at ``addr``, whose
    read latches the high word that ``addr + 1`` returns."""
    return (Register(f"{name}_lo", addr, 32, _RO, f"{doc}, low word", engine=engine, part=0),
            Register(f"{name}_hi", addr + 1, 32, _RO,
                     f"{doc}, high word latched by the last {name}_lo read", engine=engine,
                     part=1))


REGISTERS = (
    Register("id", 0x00, 32, _RO, "ID_MAGIC: 'ZM' << 16 | protocol version"),
    Register("param_w", 0x01, 32, _RO, "W, stream width and lanes"),
    Register("param_d_max", 0x02, 32, _RO, "D_MAX, largest d"),
    Register("param_b_max", 0x03, 32, _RO, "B_MAX, largest minibatch"),
    Register("param_store_depth", 0x04, 32, _RO, "sample store depth in W-bit words"),
    Register("param_max_payload", 0x05, 32, _RO, "largest frame payload in bytes"),
    Register("param_clk_hz", 0x06, 32, _RO, "system clock frequency in Hz"),
    Register("param_divisor", 0x07, 32, _RO, "UART clocks per bit"),
    Register("param_buf_depth", 0x0A, 32, _RO, "BUF_DEPTH, engine code buffer words"),
    Register("caps", 0x0B, 32, _RO, "bit 0 L2 shrink built; bit 1 stall_cycles not counted; "
             "bit 2 configuration registers not read back; "
             "bits 8..11 engine architecture code; bits 16..21 engine counter width (0: 48); "
             "bits 24..28 link counter width (0: 16)"),
    Register("ctrl", 0x08, 3, _RW, "bit 0 enable, bit 1 clear (strobe), bit 2 stop replay (strobe)"),
    Register("status", 0x09, 3, _RO, "bit 0 engine idle, 1 overflow, 2 replay running"),
    # Engine run-time registers, docs/engine.md.
    Register("q", 0x10, 6, _RW, "bits per code, 1..32", engine="q"),
    Register("mode", 0x11, 1, _RW, "0 double, 1 single (grads from the code buffer)", engine="mode"),
    Register("d", 0x12, 16, _RW, "features (intercept included)", engine="d"),
    Register("step", 0x13, 18, _RW, "step mantissa", engine="step"),
    Register("step_shift", 0x14, 6, _RW, "step exponent", engine="step_shift"),
    Register("decay_shift", 0x15, 5, _RW, "0 constant step", engine="decay_shift"),
    Register("n_epoch", 0x16, 32, _RW, "samples per epoch, for the step decay", engine="n_epoch"),
    Register("l2_shift", 0x17, 6, _RW, "0 no L2 shrink", engine="l2_shift", requires="L2"),
    Register("grid", 0x18, 1, _RW, "0 symmetric, 1 floor grid (docs/engine.md, Grids)",
             engine="grid"),
    # Engine counters: read the low word first; its read latches the high word, which the next
    # read of the high word returns, so a counter read while the engine runs is never torn.
    *_counter("cycles", 0x20, "cycles", "enabled cycles since clear"),
    *_counter("samples", 0x22, "samples", "dot groups completed"),
    *_counter("words", 0x24, "words", "stream words consumed"),
    *_counter("stall", 0x26, "stall_cycles", "enabled cycles with input not ready"),
    # Sample store (docs/design.md §5; docs/link.md).
    Register("store_wptr", 0x30, 32, _RW, "next STORE word address"),
    Register("store_len", 0x31, 32, _RW, "words replayed per epoch, from address 0"),
    Register("replay_done", 0x32, 16, _RO,
             "epochs fed to the engine by the current replay (at most REPLAY's u16 epochs)"),
    Register("replay_cycles", 0x33, 32, _RO,
             "clocks from the REPLAY command until the store is fed and the engine idle"),
    # Store feed (docs/store.md): between the store's replay and the engine. Write these only
    # between replays.
    Register("store_p", 0x34, 5, _RW,
             "stored planes per value p (q <= p <= 16): the feed draws floor-grid codes from a "
             "replayed stored segment; 0 replays the words unchanged"),
    Register("store_round", 0x35, 1, _RW,
             "0 stochastic carries from the generators, 1 nearest level (ties up)"),
    Register("seed_lo", 0x36, 32, _WO,
             "the generators' 64-bit seed, low half: write it first (it goes into the "
             "generators' state at once; the seed is whole with seed_hi)"),
    Register("seed_hi", 0x37, 32, _WO,
             "the seed's high half: writing it loads generator k with {seed_hi, seed_lo} XOR "
             "k * 0x9E3779B97F4A7C15 cut to its state (W <= 16: one xorshift32, the low half "
             "alone); the state then persists across replays and clears"),
    # Link health: 16-bit counters that wrap (they say whether, and how often, something went
    # wrong between two reads: take differences mod 2**16; a build may count fewer bits, caps
    # says how many: the iCEBreaker's 8), a few cells each on the UP5K.
    Register("rx_ok", 0x38, 16, _RO, "good frames received, mod 2**16"),
    Register("rx_bad", 0x39, 16, _RO, "frames dropped for CRC, length or overrun, mod 2**16"),
    Register("rx_overrun", 0x3A, 16, _RO, "bytes lost because the frame buffer was busy, mod 2**16"),
    Register("rx_uart_err", 0x3B, 16, _RO, "UART framing errors (stop bit 0), mod 2**16"),
)

REGISTER_BY_NAME = {r.name: r for r in REGISTERS}
#: the link health counters (`LINK_BITS_FULL` wide in the map; caps says a build's width)
LINK_COUNTERS = ("rx_ok", "rx_bad", "rx_overrun", "rx_uart_err")
#: the configuration registers: read-write, held; a build without readback (caps) reads them 0
CONFIG_REGISTERS = tuple(r.name for r in REGISTERS if r.access is Access.RW and r.name != "ctrl")
#: engine counter -> (low register, high register); reading the low one latches the high one
COUNTERS = {r.engine: (r, next(h for h in REGISTERS if h.engine == r.engine and h.part == 1))
            for r in REGISTERS if r.engine is not None and r.access is Access.RO and r.part == 0}
REGISTER_BY_ADDR = {r.addr: r for r in REGISTERS}
ENGINE_REGISTERS = tuple(r for r in REGISTERS if r.engine is not None and r.access is Access.RW)

assert len(REGISTER_BY_ADDR) == len(REGISTERS), "register addresses must be unique"
assert all(0 <= r.addr < 256 for r in REGISTERS), "register addresses are one byte"
assert all(REGISTER_BY_NAME[n].width == LINK_BITS_FULL for n in LINK_COUNTERS)


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data`` (bytes-like); ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(bytes(data), crc)



def stuff(body):
    """Byte-stuff a frame body: FLAG and ESC become ESC, byte ^ ESC_XOR."""
    body = bytes(body)
    if FLAG not in body and ESC not in body:
        return body
    return (body.replace(bytes([ESC]), bytes([ESC, ESC ^ ESC_XOR]))
                .replace(bytes([FLAG]), bytes([ESC, FLAG ^ ESC_XOR])))


def unstuff(data):
    """Inverse of `stuff`; raises `FrameError` on a dangling or invalid escape."""
    data = bytes(data)
    if ESC not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESC:
            try:
                out.append(next(it) ^ ESC_XOR)
            except StopIteration:
                raise FrameError("frame ends inside an escape") from None
        else:
            out.append(b)
    return bytes(out)


def encode_frame(seq, cmd, payload=b""):
    """Wire bytes of one frame: FLAG, stuffed (header, payload, CRC), FLAG."""
    payload = bytes(payload)
    if not 0 <= seq < 256:
        raise ValueError(f"seq must be 0..255, got {seq}")
    if not 0 <= cmd < 256:
        raise ValueError(f"cmd must be 0..255, got {cmd}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    body = bytes([seq, cmd, len(payload) & 0xFF, len(payload) >> 8]) + payload
    body += crc16(body).to_bytes(2, "big")
    return bytes([FLAG]) + stuff(body) + bytes([FLAG])


class FrameError(ValueError):
    """A received frame failed its length, escape or CRC check."""


@dataclass(frozen=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes

    @classmethod
    def decode(cls, body):
        """Check and split one unstuffed body (between two FLAGs)."""
        if len(body) < HEADER_BYTES + CRC_BYTES:
            raise FrameError(f"frame of {len(body)} bytes is shorter than header + CRC")
        if crc16(body) != 0:
            raise FrameError("CRC mismatch")
        n = body[2] | body[3] << 8
        if n != len(body) - HEADER_BYTES - CRC_BYTES:
            raise FrameError(f"length field {n} != {len(body) - HEADER_BYTES - CRC_BYTES} payload bytes")
        return cls(body[0], body[1], bytes(body[HEADER_BYTES:-CRC_BYTES]))


class FrameParser:
    """Incremental receiver: feed wire bytes, get good `Frame`s and a count of bad ones.

    The host side of what `zipml.hw.frame.FrameReceiver` does in gateware. A frame longer
    than the longest a board sends (``max_payload`` bytes of payload, every byte escaped) is
    counted bad when it passes that length and dropped up to the next FLAG, so a line of noise
    never grows the buffer without bound.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        self._buf = bytearray()
        self._in_frame = False
        self.max_stuffed = 2 * (HEADER_BYTES + max_payload + 2)
        self.bad = 0

    def feed(self, data):
        frames = []
        for part in _split_keep(bytes(data)):
            if part == FLAG:
                if self._buf:
                    try:
                        frames.append(Frame.decode(unstuff(self._buf)))
                    except FrameError:
                        self.bad += 1
                self._buf.clear()
                self._in_frame = True
            elif self._in_frame:
                self._buf += part
                if len(self._buf) > self.max_stuffed:
                    self.bad += 1
                    self._buf.clear()
                    self._in_frame = False
        return frames


def _split_keep(data):
    """Yield runs of non-FLAG bytes and the FLAG bytes (as ints) between them, in order."""
    start = 0
    while True:
        i = data.find(FLAG, start)
        if i < 0:
            if start < len(data):
                yield data[start:]
            return
        if i > start:
            yield data[start:i]
        yield FLAG
        start = i + 1
