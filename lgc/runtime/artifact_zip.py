"""Reading the zip container of a .lgc without trusting it: what a hostile file may not do.

An artifact is a handful of known members. Before any member is read: the path must be a
regular file (a FIFO or device would block, so it is stat'ed first and opened non-blocking),
the zip's end record may list only a few entries, and each member must have a known name
(no duplicates: unzip and zipfile disagree on which one counts), be stored or deflated,
unencrypted, within its size cap and not compressed beyond MAX_RATIO (a zip bomb). Members
are then streamed in chunks, never past the size their header declares.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zipfile

from ..errors import ArtifactError

MAX_ENTRIES = 8                 # an artifact has five members
MAX_CENTRAL_DIRECTORY = 1 << 16
MAX_RATIO = 100                 # real members deflate < 20:1; all-zero data ~1000:1 (written stored)
RATIO_FREE_BYTES = 1 << 20      # members this small may have any ratio (they cost little)
CHUNK = 1 << 16                 # read size: zipfile holds a chunk twice while it decompresses
_EOCD = struct.Struct("<4s4H2LH")   # the zip's end of central directory record
_LOCAL = struct.Struct("<4s5H3L2H")  # a member's local header
_ZIP64 = 0xFFFFFFFF                   # a local size said to be in the zip64 extra field instead


def open_regular(path: str):
    """A binary file object for `path`, which must be a regular file; never blocks."""
    where = os.path.basename(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except OSError as e:
        raise ArtifactError(f"{where}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{where}: not a regular file (an artifact is a .lgc zip file)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ArtifactError(f"{where}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):     # replaced between stat and open
        os.close(fd)
        raise ArtifactError(f"{where}: not a regular file (an artifact is a .lgc zip file)")
    return os.fdopen(fd, "rb")


def check_end_record(f, where: str) -> int:
    """Refuse a zip whose end record lists more entries than an artifact has, before zipfile
    builds an object per entry (a small file can list millions); returns the file's size."""
    size = f.seek(0, io.SEEK_END)
    tail_len = min(size, _EOCD.size + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ArtifactError(f"{where}: truncated or corrupted artifact (no zip end record)")
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    if entries > MAX_ENTRIES or cd_size > MAX_CENTRAL_DIRECTORY:
        raise ArtifactError(f"{where}: the zip lists {entries} entries in {cd_size} bytes; "
                            f"an artifact has at most {MAX_ENTRIES}")
    f.seek(0)
    return size


def check_members(z: zipfile.ZipFile, allowed: dict, where: str, file_size: int
                  ) -> dict[str, zipfile.ZipInfo]:
    """Name -> ZipInfo, each member checked: a known name (`allowed`: name -> most bytes),
    unique, stored or deflated, unencrypted, within the file and its cap, no zip bomb."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in z.infolist():
        name = info.filename
        if name in infos:
            raise ArtifactError(f"{where}: duplicate member {name!r}")
        if name not in allowed:
            raise ArtifactError(f"{where}: unexpected member {name!r} (an artifact holds "
                                f"{', '.join(allowed)})")
        if info.flag_bits & 0x1:
            raise ArtifactError(f"{where}: member {name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArtifactError(f"{where}: member {name} uses zip method {info.compress_type} "
                                f"(lgc writes stored or deflated members)")
        if info.header_offset + info.compress_size > file_size:
            raise ArtifactError(f"{where}: member {name} claims {info.compress_size} bytes past "
                                f"the end of the file (truncated or corrupted)")
        if info.file_size > allowed[name]:
            raise ArtifactError(f"{where}: member {name} declares {info.file_size} bytes, more "
                                f"than the {allowed[name]} an artifact's {name} may hold")
        if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_RATIO * info.compress_size:
            raise ArtifactError(f"{where}: member {name} expands {info.file_size} bytes from "
                                f"{info.compress_size} (more than {MAX_RATIO}:1, a zip bomb?)")
        infos[name] = info
    return infos


def check_local_headers(f, infos: dict[str, zipfile.ZipInfo], where: str) -> None:
    """Each member's local header says what the central directory says (zipfile reads by the
    central one): a disagreement is a corrupted or doctored file."""
    for name, info in infos.items():
        f.seek(info.header_offset)
        head = f.read(_LOCAL.size)
        if len(head) < _LOCAL.size:
            raise ArtifactError(f"{where}: member {name}'s local header is truncated")
        sig, _, flags, method, _, _, crc, csize, usize, _, _ = _LOCAL.unpack(head)
        sizes = zip((csize, usize), (info.compress_size, info.file_size))
        if sig != b"PK\x03\x04" or (flags, method, crc) != (info.flag_bits, info.compress_type, info.CRC) \
                or any(a != b and a != _ZIP64 for a, b in sizes):
            raise ArtifactError(f"{where}: member {name}'s local header disagrees with the zip's "
                                f"central directory (corrupted or doctored)")


def read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, size: int | None = None
                ) -> tuple[bytearray, str]:
    """(bytes, SHA-256 hex) of a member, streamed: never more than its header's size, and
    exactly `size` bytes when given (what the digest table declares)."""
    name = info.filename
    if size is not None and size != info.file_size:
        raise ArtifactError(f"{where}: member {name} is {info.file_size} bytes in the zip but "
                            f"{size} in digest.json")
    h = hashlib.sha256()
    data = bytearray()
    with z.open(info) as src:
        while True:
            chunk = src.read(min(CHUNK, info.file_size - len(data) + 1))
            if not chunk:
                break
            data += chunk
            h.update(chunk)
            if len(data) > info.file_size:
                raise ArtifactError(f"{where}: member {name} is larger than its header declares")
    if len(data) != info.file_size:
        raise ArtifactError(f"{where}: member {name} is shorter than its header declares "
                            f"({len(data)} of {info.file_size} bytes)")
    return data, h.hexdigest()


def write_zip(path: str, members: dict[str, bytes], compress: bool, max_ratio: float) -> None:
    """Write members to `path` (through a temporary name). Deflated members that would expand
    by more than max_ratio on reading (mostly zeros) are stored instead, so that a reader
    refusing zip bombs never refuses what lgc wrote."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    stored: set[str] = set()
    tmp = path + ".tmp"
    for _ in range(2):
        with zipfile.ZipFile(tmp, "w") as z:
            for name, data in members.items():
                z.writestr(name, data, zipfile.ZIP_STORED if name in stored else method)
            dense = {i.filename for i in z.infolist() if i.file_size > RATIO_FREE_BYTES
                     and i.file_size > max_ratio * i.compress_size}
        if not dense:
            break
        stored |= dense
    os.replace(tmp, path)  # never leave a half-written artifact under the final name
