"""Just enough ASN.1 DER to read a module signature: the PKCS#7 SignedData that scripts/sign-file
appends holds the signer's issuer name, its certificate's serial number and the digest algorithm,
which is what `modinfo` shows (signer, sig_key, sig_hashalgo).

Nothing here checks a signature: the kernel does that when it loads the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SEQUENCE, SET, INTEGER, OID, OCTET_STRING = 0x30, 0x31, 0x02, 0x06, 0x04
# [0] constructed, context-specific: SignedData's certificates, ContentInfo's content
CONTEXT_0 = 0xA0

# Digest algorithms by OID, named as the kernel's CONFIG_MODULE_SIG_HASH names them.
DIGESTS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.8": "sha3-256",
    "2.16.840.1.101.3.4.2.9": "sha3-384",
    "2.16.840.1.101.3.4.2.10": "sha3-512",
}
SIGNED_DATA = "1.2.840.113549.1.7.2"
COMMON_NAME = "2.5.4.3"


class DerError(ValueError):
    """The bytes are not the DER this reader expects."""


@dataclass(frozen=True)
class Node:
    """One DER element: its tag and where its value lies in `data`."""

    data: bytes
    tag: int
    start: int
    end: int

    @property
    def value(self) -> bytes:
        return self.data[self.start:self.end]

    def children(self) -> list[Node]:
        return list(_elements(self.data, self.start, self.end))

    def child(self, index: int, tag: int | None = None) -> Node:
        kids = self.children()
        if index >= len(kids):
            raise DerError(f"element {index} missing in a {len(kids)}-element construct")
        if tag is not None and kids[index].tag != tag:
            raise DerError(f"element {index} has tag 0x{kids[index].tag:02x}, expected 0x{tag:02x}")
        return kids[index]


def parse(data: bytes) -> Node:
    """The one element `data` holds (trailing bytes are an error)."""
    nodes = list(_elements(data, 0, len(data)))
    if len(nodes) != 1:
        raise DerError(f"{len(nodes)} top-level elements, expected 1")
    return nodes[0]


def _elements(data: bytes, pos: int, end: int) -> Iterator[Node]:
    while pos < end:
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise DerError("high tag numbers are not used in module signatures")
        if pos + 1 >= end:
            raise DerError("truncated element header")
        length, pos = data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > end:
                raise DerError("bad length encoding")
            length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
        if pos + length > end:
            raise DerError("element runs past its container")
        yield Node(data, tag, pos, pos + length)
        pos += length


def oid(node: Node) -> str:
    """An OBJECT IDENTIFIER's dotted form.

    >>> oid(parse(bytes.fromhex("06092a864886f70d010702")))
    '1.2.840.113549.1.7.2'
    """
    if node.tag != OID or not node.value:
        raise DerError("not an OBJECT IDENTIFIER")
    raw = node.value
    first = raw[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def name_field(name: Node, field_oid: str) -> str | None:
    """One attribute of an X.501 Name (a SEQUENCE of SETs of (type, value)), e.g. its CN."""
    for rdn in name.children():
        for atv in rdn.children():
            kids = atv.children()
            if len(kids) == 2 and kids[0].tag == OID and oid(kids[0]) == field_oid:
                return kids[1].value.decode("utf-8", "replace")
    return None


@dataclass(frozen=True)
class SignerInfo:
    """What a PKCS#7 signature says about who signed: as kmod's modinfo reads it."""

    issuer: str  # the CN of the signing certificate's issuer (its subject, for a self-signed one)
    serial: bytes  # the certificate's serial number: modinfo's sig_key
    digest: str  # sha256, ...


def signer_info(pkcs7: bytes) -> SignerInfo:
    """The first SignerInfo of a DER PKCS#7 SignedData (ContentInfo)."""
    content_info = parse(pkcs7)
    if content_info.tag != SEQUENCE or oid(content_info.child(0, OID)) != SIGNED_DATA:
        raise DerError("not a PKCS#7 SignedData")
    signed_data = content_info.child(1, CONTEXT_0).child(0, SEQUENCE)
    signer_infos = signed_data.children()[-1]
    if signer_infos.tag != SET or not signer_infos.children():
        raise DerError("no SignerInfo")
    info = signer_infos.child(0, SEQUENCE)
    sid = info.child(1)
    if sid.tag == SEQUENCE:  # issuerAndSerialNumber
        issuer = name_field(sid.child(0, SEQUENCE), COMMON_NAME) or "(no CN)"
        serial = sid.child(1, INTEGER).value
    else:  # [0] subjectKeyIdentifier (sign-file -k)
        issuer, serial = "(identified by key id)", sid.value
    serial = serial.lstrip(b"\0") or b"\0"  # as a number: no sign byte, no leading zeros
    algorithm = oid(info.child(2, SEQUENCE).child(0, OID))
    return SignerInfo(issuer=issuer, serial=serial, digest=DIGESTS.get(algorithm, algorithm))
