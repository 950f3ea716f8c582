"""The WASI preview1 functions a Rust wasm32-wasip1 cdylib filter imports.

Both gateways provide a small WASI of their own (no filesystem, no args);
this one does the same: stdout/stderr go to the worker's log, the clock is the
host's (test-controlled) clock, randomness is real. Anything else a module
imports from WASI answers ENOSYS rather than pretending to work."""

import os
import struct

ERRNO_SUCCESS = 0
ERRNO_BADF = 8
ERRNO_INVAL = 28
ERRNO_NOSYS = 52


class ProcExit(Exception):
    """The guest called proc_exit: its VM is gone, like on a real host."""


def functions(worker):
    """name -> python callable (first argument: the wasmtime Caller)."""
    from .memory import GuestMemory

    def fd_write(caller, fd, iovs, iovs_len, nwritten_out):
        mem = GuestMemory(caller)
        raw = mem.read(iovs, 8 * iovs_len)
        out = bytearray()
        for i in range(iovs_len):
            ptr, size = struct.unpack_from("<II", raw, 8 * i)
            out += mem.read(ptr, size)
        if fd not in (1, 2):
            return ERRNO_BADF
        worker.log_line("stdout" if fd == 1 else "stderr", out.decode("utf-8", "replace"))
        mem.write_u32(nwritten_out, len(out))
        return ERRNO_SUCCESS

    def random_get(caller, buf, size):
        GuestMemory(caller).write(buf, os.urandom(size))
        return ERRNO_SUCCESS

    def clock_time_get(caller, _clock_id, _precision, time_out):
        GuestMemory(caller).write_u64(time_out, worker.host.clock.now_ns())
        return ERRNO_SUCCESS

    def sizes_get(caller, count_out, size_out):
        mem = GuestMemory(caller)
        mem.write_u32(count_out, 0)
        mem.write_u32(size_out, 0)
        return ERRNO_SUCCESS

    def empty_get(_caller, _ptrs, _buf):
        return ERRNO_SUCCESS

    def proc_exit(_caller, code):
        raise ProcExit(f"guest called proc_exit({code})")

    def fd_prestat_get(_caller, _fd, _out):
        return ERRNO_BADF  # no preopened directories

    def sched_yield(_caller):
        return ERRNO_SUCCESS

    return {
        "fd_write": fd_write,
        "random_get": random_get,
        "clock_time_get": clock_time_get,
        "environ_sizes_get": sizes_get,
        "environ_get": empty_get,
        "args_sizes_get": sizes_get,
        "args_get": empty_get,
        "proc_exit": proc_exit,
        "fd_prestat_get": fd_prestat_get,
        "sched_yield": sched_yield,
    }


def nosys(_name):
    def unsupported(_caller, *_args):
        return ERRNO_NOSYS

    return unsupported
