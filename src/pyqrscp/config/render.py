"""``pyqrscp --check-config``: the configuration as pyqrscp understood it, in stable plain text."""

from __future__ import annotations

from pyqrscp.config.model import Config, Peer, redact_url


def _size(size: int) -> str:
    """Bytes in the largest 1024-based unit that divides them exactly, as one would write it."""
    for unit, factor in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


def _bytes(size: int) -> str:
    return f"{size} bytes per study ({_size(size)})"


def _peer(peer: Peer) -> str:
    return f"({peer.ae_title}, {peer.host}, {peer.port})"


def _peer_lines(peers: tuple[Peer, ...]) -> list[str]:
    return [f"    {_peer(peer)}" for peer in peers] or ["    (none)"]


def _globals(config: Config) -> list[str]:
    charset = config.specific_character_set
    flags = [
        name
        for name, on in (
            ("fallback", charset.fallback),
            ("override", charset.override),
            ("abort", charset.abort),
            ("discard", charset.discard),
            ("transliterate", charset.transliterate),
        )
        if on
    ]
    shown_charset = "(not set)" if charset.character_set is None else repr(charset.character_set)
    port = "(default)" if config.network_tcp_port is None else str(config.network_tcp_port)
    return [
        f"Config file: {config.path}",
        "",
        "Global parameters:",
        f"  NetworkTCPPort       {port}",
        f"  MaxPDUSize           {config.max_pdu_size}",
        f"  MaxAssociations      {config.max_associations}",
        f"  SpecificCharacterSet {shown_charset}; options: {', '.join(flags) or '(none)'}",
        f"  UserName             {config.user_name or '(not set)'}",
        f"  GroupName            {config.group_name or '(not set)'}",
    ] + ([f"  IndexDatabase        {redact_url(config.index_database)}"]
         if config.index_database else [])


def _tables(config: Config) -> list[str]:
    lines = ["", f"HostTable: {len(config.hosts)} entries"]
    for host in config.hosts:
        lines += [
            f"  {host.name} (line {host.line}): {len(host.peers)} peers",
            *_peer_lines(host.peers),
        ]
    lines += ["", f"VendorTable: {len(config.vendors)} entries"]
    for vendor in config.vendors:
        lines += [f"  {vendor.vendor_name!r} = {vendor.symbolic_name} (line {vendor.line})"]
        lines += _peer_lines(vendor.peers)
    lines += ["", f"AETable: {len(config.ae_table)} entries"]
    for entry in config.ae_table:
        quota = entry.quota
        lines += [
            f"  {entry.ae_title} (line {entry.line})",
            f"    storage area: {entry.storage_area}",
            f"    access:       {entry.access.value}",
            f"    quota:        {quota.max_studies} studies, {_bytes(quota.max_bytes_per_study)}",
        ]
        if entry.peers is None:
            lines.append("    peers:        ANY")
        else:
            lines += [
                f"    peers:        {len(entry.peers)}",
                *(f"  {p}" for p in _peer_lines(entry.peers)),
            ]
    return lines


def render_config(config: Config) -> str:
    """Globals, HostTable/VendorTable peers expanded to triples, the AETable, then warnings.

    The output depends only on ``config`` (stable across runs) so it can be diffed and tested.
    """
    lines = _globals(config) + _tables(config)
    if config.warnings:
        lines += ["", f"Warnings: {len(config.warnings)}", *(f"  {w}" for w in config.warnings)]
    return "\n".join(lines) + "\n"
