"""The C kernel's persistent thread pool: any thread count, concurrent callers and forked children give
the same codes and flag counts as one thread (every element depends on its value and index only)."""

import multiprocessing
import threading

import numpy as np
import pytest

from opendojo.numerics import _native, get_format
from opendojo.numerics.stochastic import seed_keys

pytestmark = pytest.mark.skipif(not _native.AVAILABLE, reason="needs the compiled kernel")

FMT = get_format("cfloat8_1_5_2")
# not a multiple of the kernel's 2**15-element chunk, with specials to count flags on
N = 5 * (1 << 15) + 777


def _input() -> np.ndarray:
    x = np.random.default_rng(3).standard_normal(N).astype(np.float32) * 1e3
    x[::1001] = np.inf
    x[5::4099] = np.nan
    x[7::97] = 1e-30  # underflows at bias 9
    x[3::501] = -1e30  # overflows
    return x


def _encode(x: np.ndarray, threads: int) -> tuple[np.ndarray, dict[str, int]]:
    out = np.empty(x.shape, dtype=FMT.code_dtype)
    counts = _native.run(_native.ENC_F32_U8, x.ctypes.data, out.ctypes.data, x.size, FMT, 9, "stochastic",
                         seed_keys(11), threads=threads, flags_of="float32")
    return out, counts


def test_codes_and_flag_counts_do_not_depend_on_the_thread_count():
    x = _input()
    want, want_counts = _encode(x, 1)
    assert want_counts["overflow"] > 0 and want_counts["underflow"] > 0 and want_counts["invalid"] > 0
    for threads in (2, 3, 8, 2):  # the pool grows to 7 workers, then a call asks for fewer
        codes, counts = _encode(x, threads)
        assert np.array_equal(codes, want) and counts == want_counts


def test_concurrent_callers_share_the_pool_without_mixing_their_work():
    x = _input()
    want, want_counts = _encode(x, 1)
    results: list = [None] * 6

    def call(k: int) -> None:
        results[k] = [_encode(x * (k + 1), 2) for _ in range(3)]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(not t.is_alive() for t in threads)
    for k, runs in enumerate(results):
        single = _encode(x * (k + 1), 1)
        for codes, counts in runs:
            assert np.array_equal(codes, single[0]) and counts == single[1]
    assert np.array_equal(_encode(x, 2)[0], want)


def _child(queue) -> None:
    x = _input()
    queue.put(bool(np.array_equal(_encode(x, 2)[0], _encode(x, 1)[0])))


def test_a_forked_child_starts_its_own_workers():
    _encode(_input(), 2)  # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the kernel")
    assert child.exitcode == 0 and queue.get(timeout=5) is True
