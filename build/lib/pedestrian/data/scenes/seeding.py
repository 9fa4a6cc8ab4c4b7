"""Random numbers: a scene's uniform stream, and the generators of a batch seeded at once."""

from __future__ import annotations

from itertools import chain

import numpy as np

STREAM_BLOCK = 384  # uniforms a scene draws up front: it needs ~175, rarely over 350 (more: see _draw_scene)


def _stream(rng: np.random.Generator, block: int | None):
    """A scene's uniform [0, 1) numbers as a C-level iterator's __next__ (the Python cost per draw stays
    tiny): `block` numbers drawn at once and read through a memoryview (StopIteration after the last), or
    with block None, without end, fetched 64 at a time. The same numbers either way."""
    if block is None:
        return chain.from_iterable(iter(lambda: rng.random(64).tolist(), None)).__next__
    return iter(memoryview(rng.random(block))).__next__


# -- seeding ------------------------------------------------------------------------------------------------
# np.random.default_rng([seed, sid, index]) costs ~30 us, as much as drawing a car. A batch needs the same
# generators, so render_many derives their PCG64 states at once: numpy's SeedSequence hash (uint32 words,
# vectorised over the indices) and PCG64's seeding, then sets them into one reused generator. Same state,
# so the same numbers; checked against default_rng on every call (any mismatch: back to default_rng).

_M32, _M128 = 0xFFFFFFFF, (1 << 128) - 1
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED  # SeedSequence
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG64's 128-bit LCG multiplier


def _words(n: int) -> list[int]:
    """An entropy integer as SeedSequence reads it: uint32 words, lowest first."""
    out = [n & _M32]
    while n >> 32:
        n >>= 32
        out.append(n & _M32)
    return out


def _pcg64_states(seed: int, sid: int, indices: range) -> list[tuple[int, int]]:
    """PCG64 (state, inc) of default_rng([seed, sid, i]) for each i (0 <= i < 2**32), as Python ints."""
    n = len(indices)
    entropy = [np.full(n, w, np.uint32) for w in _words(seed) + _words(sid)]
    entropy.append(np.arange(indices.start, indices.stop, dtype=np.uint32))
    hc = _INIT_A  # SeedSequence's running hash constant: the same for every index

    def hashmix(v):
        nonlocal hc
        v = v ^ np.uint32(hc)
        hc = hc * _MULT_A & _M32
        v = v * np.uint32(hc)  # uint32 arrays wrap, as in the C code
        return v ^ (v >> np.uint32(16))

    def mix(x, y):
        r = x * np.uint32(_MIX_L) - y * np.uint32(_MIX_R)
        return r ^ (r >> np.uint32(16))

    pool = [hashmix(entropy[i] if i < len(entropy) else np.zeros(n, np.uint32)) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(4, len(entropy)):
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(entropy[src]))
    hc, words = _INIT_B, []  # generate_state(4, uint64): 8 words cycling over the pool
    for i in range(8):
        v = pool[i % 4] ^ np.uint32(hc)
        hc = hc * _MULT_B & _M32
        v = v * np.uint32(hc)
        words.append((v ^ (v >> np.uint32(16))).astype(np.uint64))
    s_hi, s_lo, i_hi, i_lo = ((words[2 * j] | (words[2 * j + 1] << np.uint64(32))).tolist() for j in range(4))
    out = []
    for a, b, c, d in zip(s_hi, s_lo, i_hi, i_lo):  # pcg64_set_seed: two LCG steps around adding the seed
        inc = (((c << 64) | d) << 1 | 1) & _M128
        out.append((((inc + ((a << 64) | b)) * _PCG_MULT + inc) & _M128, inc))
    return out


def _generators(seed: int, sid: int, indices: range):
    """Yield a generator in the state of np.random.default_rng([seed, sid, i]) for each i in indices (the
    same object each time: use it up before asking for the next)."""
    if not indices:
        return
    fast = isinstance(seed, (int, np.integer)) and 0 <= seed and 0 <= indices.start and indices.stop <= 1 << 32
    if fast:
        states = _pcg64_states(int(seed), sid, indices)
        ref = np.random.default_rng([seed, sid, indices.start]).bit_generator.state["state"]
        fast = ref == {"state": states[0][0], "inc": states[0][1]}
    if not fast:  # negative numbers raise here, as they would in default_rng
        yield from (np.random.default_rng([seed, sid, i]) for i in indices)
        return
    bits = np.random.PCG64(0)
    gen = np.random.Generator(bits)
    for state, inc in states:
        bits.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0,
                      "uinteger": 0}
        yield gen
