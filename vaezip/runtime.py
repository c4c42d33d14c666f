"""Process-wide settings for a process that codes large images (the command line, benchmark workers).

The transforms allocate and free buffers of tens to hundreds of MB for every layer of every tile. glibc's
malloc serves such sizes with fresh mmap()s and returns them on free, so each layer first takes page faults
on zeroed memory: at 12 MP that was a third of the decoding time. Keeping freed memory in the heap instead
(a larger mmap threshold and trim threshold) made decoding 1.4x faster here. It is a setting of the whole
process, so the library leaves it to programs that own their process; vaezip's CLI applies it.

One arena: the tile workers are threads, and glibc gives other threads arenas of 64 MB heaps, which cannot
hold these buffers and fall back to mmap: two workers were slower than one until all threads shared the
main heap (the allocations are few and large, so its lock costs nothing).
"""
from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Allocations below this come from the heap and stay there when freed.
KEEP_BELOW = 1 << 30


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve and keep large buffers in the heap; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(mallopt(option, value) for option, value in
               ((_M_MMAP_THRESHOLD, KEEP_BELOW), (_M_TRIM_THRESHOLD, KEEP_BELOW), (_M_ARENA_MAX, 1)))
