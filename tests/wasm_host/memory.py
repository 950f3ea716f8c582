"""Guest memory access for one hostcall: read the filter's buffers and hand
data back the proxy-wasm way (the host asks the guest to allocate with
`proxy_on_memory_allocate`, copies the bytes in, then writes the pointer and
length into the two out-parameters the guest passed)."""

import struct


class GuestMemory:
    def __init__(self, caller):
        self._caller = caller
        self._memory = caller["memory"]

    def read(self, ptr, size):
        if size == 0:
            return b""
        return bytes(self._memory.read(self._caller, ptr, ptr + size))

    def read_str(self, ptr, size):
        return self.read(ptr, size).decode("utf-8", "replace")

    def write(self, ptr, data):
        self._memory.write(self._caller, data, ptr)

    def write_u32(self, ptr, value):
        self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))

    def write_u64(self, ptr, value):
        self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def allocate(self, data):
        """Copy `data` into a fresh guest allocation; returns its pointer."""
        if not data:
            return 0
        alloc = self._caller["proxy_on_memory_allocate"]
        ptr = alloc(self._caller, len(data))
        if not ptr:
            raise MemoryError("guest proxy_on_memory_allocate returned NULL")
        self.write(ptr, data)
        return ptr

    def return_bytes(self, data, ptr_out, size_out):
        """Hand `data` to the guest through its (ptr, size) out-parameters."""
        self.write_u32(ptr_out, self.allocate(data))
        self.write_u32(size_out, len(data))
