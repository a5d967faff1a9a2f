# SPDX-License-Identifier: MIT
"""shmrpc.HybridLock as speedysvc documents it (seed 000): its four modes and their
exceptions, lock(timeout=) in fractional seconds against a holder in another process,
initial_value 0, permissions, and a holder killed with SIGKILL. Every lock a test makes is
removed when it ends."""
import os
import signal
import stat
import time

import pytest

import shmrpc
from shmrpc import (CONNECT_OR_CREATE, CONNECT_TO_EXISTING, CREATE_NEW_EXCLUSIVE,
                    CREATE_NEW_OVERWRITE, HybridLock)
from test_dict import Py, WAIT


@pytest.fixture
def name(request):
    n = f"pyt_{request.node.name}_{os.getpid()}"
    yield n
    try:
        HybridLock.unlink(n)
    except shmrpc.Error:
        pass


def holder(name, then="time.sleep(60)"):
    """Another process that takes the lock, prints its pid, then runs `then`."""
    p = Py(f"""
        import os, sys, time
        from shmrpc import HybridLock, CONNECT_TO_EXISTING
        l = HybridLock({name!r}, CONNECT_TO_EXISTING)
        l.lock(timeout=5)
        print(os.getpid(), flush=True)
        {then}
    """)
    return p, int(p.line())


def test_seed_example(name):
    sem = HybridLock(name, CREATE_NEW_OVERWRITE, 1, 0o666)
    assert sem.lock(timeout=1) is True
    assert sem.is_mine()
    sem.unlock()
    assert not sem.is_mine()
    with sem:
        assert sem.blocking_pid == os.getpid()
    assert sem.blocking_pid == 0
    assert stat.S_IMODE(os.stat(f"/dev/shm/shmrpc.lock.{name}").st_mode) == 0o666


def test_modes(name):
    with pytest.raises(shmrpc.NoSuchSemaphore):
        HybridLock(name, CONNECT_TO_EXISTING)
    first = HybridLock(name, CREATE_NEW_EXCLUSIVE)
    with pytest.raises(shmrpc.SemaphoreExists):
        HybridLock(name, CREATE_NEW_EXCLUSIVE)
    same = HybridLock(name, CONNECT_OR_CREATE)
    first.lock()
    p = Py(f"""
        import shmrpc
        l = shmrpc.HybridLock({name!r}, shmrpc.CONNECT_TO_EXISTING)
        try:
            l.lock(timeout=0.05)
        except shmrpc.Timeout:
            print('held')
        fresh = shmrpc.HybridLock({name!r}, shmrpc.CREATE_NEW_OVERWRITE)
        fresh.lock(timeout=0)  # a new lock under the name: free
        print('new')
    """)
    try:
        assert p.finish().split() == ["held", "new"]
    finally:
        p.stop()
    # The handles open before keep the old lock, which this process still holds.
    assert first.is_mine() and same.blocking_pid == os.getpid()
    first.unlock()
    with pytest.raises(ValueError, match="mode 7"):
        HybridLock(name, 7)
    with pytest.raises(ValueError, match="initial_value"):
        HybridLock(name, CONNECT_OR_CREATE, 2)
    with pytest.raises(ValueError, match="HybridLock a/b"):
        HybridLock("a/b")


def test_timeouts_are_fractional(name):
    HybridLock(name, CREATE_NEW_EXCLUSIVE)
    p, pid = holder(name)
    try:
        mine = HybridLock(name, CONNECT_TO_EXISTING)
        assert mine.blocking_pid == pid
        for t in (0.05, 0.3):
            t0 = time.monotonic()
            with pytest.raises(shmrpc.Timeout):
                mine.lock(timeout=t)
            took = time.monotonic() - t0
            assert t <= took < t + 0.5  # fractions, not whole seconds
        with pytest.raises(shmrpc.Error, match="is held by thread .*, not by this one") as e:
            mine.unlock()  # a lock, not a semaphore: only its holder unlocks it
        assert e.value.status_name == "SHMRPC_EPERM"
    finally:
        p.stop()


def test_holder_killed_with_sigkill(name):
    HybridLock(name, CREATE_NEW_EXCLUSIVE)
    p, pid = holder(name)
    try:
        mine = HybridLock(name, CONNECT_TO_EXISTING)
        os.kill(pid, signal.SIGKILL)
        p.proc.wait(WAIT)
        assert mine.lock(timeout=5) is True
        assert mine.owner_died and mine.is_mine()
        mine.unlock()
        mine.lock(timeout=0)
        assert not mine.owner_died
        mine.unlock()
    finally:
        p.stop()


def test_initial_value_0_is_created_held(name):
    l = HybridLock(name, CREATE_NEW_EXCLUSIVE, 0)
    assert l.created_held and l.is_mine()
    p = Py(f"""
        import time, shmrpc
        l = shmrpc.HybridLock({name!r}, shmrpc.CONNECT_OR_CREATE, 0)  # exists: not held
        print(l.created_held, flush=True)
        t0 = time.monotonic()
        l.lock(timeout=10)
        print(time.monotonic() - t0 >= 0.2)
        l.unlock()
    """)
    try:
        assert p.line() == "False"
        time.sleep(0.3)
        l.unlock()
        assert p.finish().split() == ["True"]
    finally:
        p.stop()


def test_permissions(name):
    HybridLock(name, CREATE_NEW_EXCLUSIVE, 1, 0o600)
    assert stat.S_IMODE(os.stat(f"/dev/shm/shmrpc.lock.{name}").st_mode) == 0o600
    # An existing lock is refused only when it grants more than the opener asks for
    # (docs/lock.md, "Permissions").
    HybridLock(name, CONNECT_TO_EXISTING, 1, 0o666).close()
    HybridLock(name, CREATE_NEW_OVERWRITE, 1, 0o660)
    assert stat.S_IMODE(os.stat(f"/dev/shm/shmrpc.lock.{name}").st_mode) == 0o660
    with pytest.raises(shmrpc.Error, match="SHMRPC_EPERM|group or other|mode"):
        HybridLock(name, CONNECT_TO_EXISTING, 1, 0o600)


def test_close_while_a_thread_waits(name):
    """close() while another thread of the process waits in lock(): that lock() raises
    Unavailable within a slice, and nothing is unmapped under it. In a child, which a fault
    would kill."""
    from test_dict import run
    out = run(f"""
        import threading, time
        from shmrpc import HybridLock, Unavailable
        sem = HybridLock({name!r})
        sem.lock()
        got = []
        def wait():
            try:
                sem.lock()
                got.append("locked")
            except Unavailable as e:
                got.append(str(e))
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        start = time.monotonic()
        sem.close()
        t.join(10)
        print(got, t.is_alive(), time.monotonic() - start < 1)
    """)
    assert out == f"['{name}: closed: closed while this waited for its lock'] False True\n"


def test_unlink_takes_the_name_as_the_constructor_does(name):
    HybridLock(name.encode(), CREATE_NEW_EXCLUSIVE).close()
    HybridLock.unlink(name.encode())
    with pytest.raises(shmrpc.NoSuchSemaphore):
        HybridLock(name, CONNECT_TO_EXISTING)
    with pytest.raises(TypeError, match="sem_loc is the lock's name, a str or bytes, not int"):
        HybridLock.unlink(5)
