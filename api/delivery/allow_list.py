"""The hosts a callback may reach (``BONEMETS_WEBHOOK_ALLOW``), against server-side request
forgery: a caller must not make the service POST to its own internal addresses.

Entries, comma-separated: a host name (``hooks.example.org``), a domain's hosts
(``*.example.org``: its subdomains, not the domain itself), or a network (``10.1.0.0/16``,
``2001:db8::/32``, one address). Empty: no callbacks at all.

At submission, a URL passes when its host is a listed name, an address inside a listed
network, or any name once networks are listed (then its addresses decide when it is sent).
Before each send, the name is resolved and every address it gives must pass: one inside a
listed network always does; any other must be public (not private, loopback, link-local,
reserved or multicast) and the host a listed name. The request then goes to the address
checked, so that a second lookup cannot send it elsewhere (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

from api.errors import CallbackRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HOST_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()  # ".example.org" for "*.example.org"
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """The entries of ``text``; ValueError names the first that is neither a host name,
        a ``*.domain`` nor a network."""
        names: set[str] = set()
        domains: list[str] = []
        networks: list[Network] = []
        for entry in (part.strip().lower().rstrip(".") for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not HOST_NAME.match(entry):
                raise ValueError(f"webhook_allow: {entry!r} is neither a host name, *.domain"
                                 " nor a network")
            if entry.startswith("*."):
                domains.append(entry[1:])
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(domains), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.domains or self.networks)

    def permits_host(self, host: str) -> bool:
        """Whether a URL naming ``host`` may be accepted (its addresses are checked later)."""
        address = _address(host)
        if address is not None:
            return self._inside(address)
        return self._lists_name(host) or bool(self.networks)

    def permits_address(self, host: str, address: Address) -> bool:
        """Whether ``host``, resolved to ``address``, may be sent to."""
        address = _plain(address)
        return self._inside(address) or (address.is_global and not address.is_multicast
                                         and self._lists_name(host))

    def _lists_name(self, host: str) -> bool:
        host = _normal(host)
        return host in self.names or any(host.endswith(domain) for domain in self.domains)

    def _inside(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


async def pinned_address(allow: AllowList, host: str, port: int) -> str:
    """The address to send to ``host`` at: the first it resolves to, once every one it
    resolves to is allowed. CallbackRefused when one is not; OSError when the name does not
    resolve (that may pass: the caller tries again later)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    for address in addresses:
        if not allow.permits_address(host, address):
            kind = _kind(_plain(address))
            raise CallbackRefused(f"the callback host resolves to a {kind} address that is"
                                  " not on the allow-list (BONEMETS_WEBHOOK_ALLOW)")
    if not addresses:
        raise OSError("the callback host resolves to no address")
    return str(addresses[0])


def _kind(address: Address) -> str:
    for kind in ("loopback", "link-local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind.replace('-', '_')}"):
            return kind
    return "public"


def _normal(host: str) -> str:
    return host.lower().rstrip(".")


def _address(host: str) -> Address | None:
    try:
        return _plain(ipaddress.ip_address(_normal(host).strip("[]")))
    except ValueError:
        return None


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
