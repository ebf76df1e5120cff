"""The import slots of a loaded shared library (Linux, 64-bit little-endian ELF).

A shared library calls a function it imports through a slot in its global offset table: the
dynamic linker writes the function's address there (at load time, or at the first call with
lazy binding). Rewriting one library's slot changes whom that library calls, and nobody else:
no symbol becomes visible to the rest of the process, as it would with LD_PRELOAD or
RTLD_GLOBAL. `rag_core.blas` uses this to send libmlx's cblas_* calls to an optimized BLAS.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from dataclasses import dataclass

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_PLTRELSZ, DT_STRTAB, DT_SYMTAB, DT_RELA, DT_RELASZ, DT_JMPREL = 0, 2, 5, 6, 7, 8, 23
# (GLOB_DAT, JUMP_SLOT) relocation types: the slots that hold a symbol's absolute address.
SLOT_RELOCATIONS = {62: (6, 7), 183: (1025, 1026)}  # EM_X86_64, EM_AARCH64
SYMBOL_SIZE, RELA_SIZE = 24, 24


class ElfError(Exception):
    """The library cannot be read or patched (not an ELF file this module understands)."""


@dataclass(frozen=True)
class LoadedLibrary:
    path: str
    base: int  # load address: a slot's address is base + its offset in the file's layout


class _PhdrInfo(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_size_t), ("name", ctypes.c_char_p),
                ("phdr", ctypes.c_void_p), ("phnum", ctypes.c_uint16)]  # fmt: skip


_PHDR_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p
)
_libc = ctypes.CDLL(None, use_errno=True)


def loaded_libraries() -> list[LoadedLibrary]:
    """Every shared object loaded in this process, in load order (dl_iterate_phdr)."""
    found: list[LoadedLibrary] = []

    def visit(info, size, data) -> int:
        name = info.contents.name
        if name:
            found.append(LoadedLibrary(os.path.realpath(os.fsdecode(name)), info.contents.addr))
        return 0

    _libc.dl_iterate_phdr(_PHDR_CALLBACK(visit), None)
    return found


def find_loaded(file_name: str) -> LoadedLibrary | None:
    """The loaded library whose file is named `file_name` (e.g. "libmlx.so"), if any."""
    for library in loaded_libraries():
        if os.path.basename(library.path) == file_name:
            return library
    return None


def import_slots(path: str, names: set[str]) -> dict[str, list[int]]:
    """Offsets (from the load base) of the slots through which `path` calls each of `names`."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _import_slots(m, names)
    except (OSError, ValueError, struct.error, IndexError) as exc:
        raise ElfError(f"cannot read the relocations of {path}: {exc}") from exc


def _import_slots(data: mmap.mmap, names: set[str]) -> dict[str, list[int]]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine not in SLOT_RELOCATIONS:
        raise ElfError(f"unsupported machine type {machine}")
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads, dynamic = [], None
    for i in range(phnum):
        header = phoff + i * phentsize
        kind, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, header)
        if kind == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        raise ElfError("no dynamic section")

    def file_offset(vaddr: int) -> int:
        for start, offset, size in loads:
            if start <= vaddr < start + size:
                return vaddr - start + offset
        raise ElfError(f"address {vaddr:#x} is in no loaded segment")

    tags: dict[int, int] = {}
    for tag, value in struct.iter_unpack("<qQ", data[dynamic[0] : dynamic[0] + dynamic[1]]):
        if tag == DT_NULL:
            break
        tags.setdefault(tag, value)
    symtab, strtab = file_offset(tags[DT_SYMTAB]), file_offset(tags[DT_STRTAB])
    wanted = {name.encode() for name in names}
    slot_types = SLOT_RELOCATIONS[machine]
    slots: dict[str, list[int]] = {}
    for table, size in ((DT_JMPREL, DT_PLTRELSZ), (DT_RELA, DT_RELASZ)):
        if table not in tags:
            continue
        start = file_offset(tags[table])
        for offset, info, _ in struct.iter_unpack("<QQq", data[start : start + tags[size]]):
            symbol, kind = info >> 32, info & 0xFFFFFFFF
            if not symbol or kind not in slot_types:
                continue
            (name_at,) = struct.unpack_from("<I", data, symtab + symbol * SYMBOL_SIZE)
            name_at += strtab
            name = data[name_at : data.find(b"\0", name_at)]
            if name in wanted:
                slots.setdefault(name.decode(), []).append(offset)
    return slots


def read_slot(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def write_slot(address: int, value: int) -> None:
    """Store a function address in a slot, lifting a read-only protection (full RELRO) for
    the write and restoring it after."""
    if _writable(address):
        ctypes.c_void_p.from_address(address).value = value
        return
    page_size = mmap.PAGESIZE
    page = address & ~(page_size - 1)
    length = address + ctypes.sizeof(ctypes.c_void_p) - page
    protect = _libc.mprotect
    protect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if protect(page, length, mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        raise ElfError(f"mprotect failed: {os.strerror(ctypes.get_errno())}")
    try:
        ctypes.c_void_p.from_address(address).value = value
    finally:
        protect(page, length, mmap.PROT_READ)


def _writable(address: int) -> bool:
    """Whether the mapping holding `address` is writable, from /proc/self/maps."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split(maxsplit=2)[:2]
            low, high = (int(x, 16) for x in span.split("-"))
            if low <= address < high:
                return perms[1] == "w"
    raise ElfError(f"address {address:#x} is not mapped")


def library_of(address: int) -> str | None:
    """The file of the shared object that holds `address` (dladdr), if any."""

    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]  # fmt: skip

    info = DlInfo()
    dladdr = _libc.dladdr
    dladdr.argtypes = (ctypes.c_void_p, ctypes.POINTER(DlInfo))
    if not address or not dladdr(address, ctypes.byref(info)) or not info.fname:
        return None
    return os.path.realpath(os.fsdecode(info.fname))
