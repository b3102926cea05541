"""A private network namespace with loopback only, for running Ray on one machine safely.

Ray picks a node address by itself, and on a machine with a network interface it binds that
interface's address even when told 127.0.0.1. The tests and benchmarks must keep all traffic
on loopback, so they run Ray inside a fresh network namespace whose only interface is ``lo``:
there, every socket is a loopback socket, whatever Ray decides.

``enter_loopback_namespace`` moves the calling thread (and every thread and process it starts
afterwards) into a new namespace and brings ``lo`` up; ``LoopbackNamespace.leave`` moves the
thread back. Called first thing in a process, it covers the whole process. It needs Linux and
the right to create namespaces (root, or CAP_SYS_ADMIN); ``NamespaceUnavailable`` says why not
otherwise. ``foreign_sockets`` lists the sockets of the caller's namespace whose addresses are
not loopback (the tests assert it is empty).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import socket
import struct
import sys
from dataclasses import dataclass

from kairos.errors import RuntimeServiceError

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")
_THIS_THREAD_NS = "/proc/thread-self/ns/net"


class NamespaceUnavailable(RuntimeServiceError):
    """This process may not create a network namespace."""


@dataclass
class LoopbackNamespace:
    """The namespace entered, and the way back to the one before."""

    previous_fd: int

    def leave(self) -> None:
        """Move the calling thread back to the namespace it was in before."""
        if self.previous_fd < 0:
            return
        _libc_call("setns", self.previous_fd, CLONE_NEWNET)
        os.close(self.previous_fd)
        self.previous_fd = -1


def _libc_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise NamespaceUnavailable(
            f"{name}(CLONE_NEWNET) failed: {os.strerror(err)}.",
            "run as root (or with CAP_SYS_ADMIN) on Linux, e.g. in the CI container.",
        )


def only_loopback_interfaces() -> bool:
    """True when the caller's namespace has no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def enter_loopback_namespace() -> LoopbackNamespace:
    """Move the calling thread into a new network namespace with ``lo`` up (see above)."""
    if not sys.platform.startswith("linux"):
        raise NamespaceUnavailable(
            "network namespaces exist on Linux only.", "run the Ray tests on Linux."
        )
    previous = os.open(_THIS_THREAD_NS, os.O_RDONLY)
    try:
        _libc_call("unshare", CLONE_NEWNET)
    except NamespaceUnavailable:
        os.close(previous)
        raise
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        _, flags = _IFREQ.unpack(fcntl.ioctl(s, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))
        fcntl.ioctl(s, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
    return LoopbackNamespace(previous)


def _address(hex_text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_text)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])  # one little-endian word
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    addr = ipaddress.IPv6Address(b"".join(words))
    return addr.ipv4_mapped or addr


def foreign_sockets() -> list[str]:
    """Sockets (TCP and UDP, v4 and v6) of the caller's namespace with a local or remote
    address that is neither loopback nor unspecified (a listening socket's 0.0.0.0)."""
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/thread-self/net/{proto}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, remote = row.split()[1:3]
            for end in (local, remote):
                addr = _address(end.split(":")[0])
                if not (addr.is_loopback or addr.is_unspecified):
                    found.append(f"{proto} {local} -> {remote} ({addr})")
    return found
