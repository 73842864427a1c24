"""A one-hot state machine for Amaranth modules whose decisions must stay a few gates deep.

Amaranth's ``m.FSM`` encodes its states in binary, and Yosys does not re-encode it: every
transition then goes through a state decoder and every state bit is an OR over all the
transitions that set it. On the iCE40, where each gate level costs a LUT and ~2 ns of routing,
that is the deepest logic of a controller with a dozen states. Here each state is a flip-flop,
so a transition is the source's flip-flop AND its condition. `one_hot_select` is the
multiplexer of the same habit: a select by one-hot flags.
"""

import contextlib
import functools
import operator

from amaranth.hdl import Signal, Mux

__all__ = ["OneHotFSM", "one_hot_select"]


def one_hot_select(pairs):
    """OR of (flag & value) over ``(flag, value)`` pairs: a select by one-hot flags, no
    priority chain."""
    return functools.reduce(operator.or_, (Mux(f, v, 0) for f, v in pairs))


class OneHotFSM:
    """States as flip-flops of ``m``'s sync domain, exactly one set at a time.

    Parameters
    ----------
    m : Module
    states : sequence of str
        State names; the first is the state after reset.
    name : str
        Prefix of the flip-flops' names (``{name}_{state}``).

    ``with fsm.state("A"):`` opens A's logic (active while A's flip-flop is set; states do not
    nest); inside it ``fsm.next("B")`` makes B the state from the next clock, under whatever
    conditions enclose the call. ``fsm["A"]`` is A's flip-flop (A is ongoing).
    """

    def __init__(self, m, states, name):
        states = list(states)
        if not states or len(set(states)) != len(states):
            raise ValueError(f"OneHotFSM {name}: states must be distinct names, got {states!r}")
        self._m = m
        self._flags = {s: Signal(name=f"{name}_{s.lower()}", init=int(i == 0))
                       for i, s in enumerate(states)}
        self._current = None

    def __getitem__(self, state):
        return self._flags[state]

    @contextlib.contextmanager
    def state(self, state):
        if self._current is not None:
            raise RuntimeError(f"state {state!r} opened inside state {self._current!r}")
        self._current = state
        try:
            with self._m.If(self._flags[state]):
                yield
        finally:
            self._current = None

    def next(self, state):
        if self._current is None:
            raise RuntimeError(f"next({state!r}) outside a state")
        if state != self._current:
            self._m.d.sync += [self._flags[self._current].eq(0), self._flags[state].eq(1)]
