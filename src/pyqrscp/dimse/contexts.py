"""Which presentation contexts each AE title accepts, and in which transfer-syntax order.

pynetdicom's acceptor picks the first of *our* transfer syntaxes that the requestor offers, so the
order of the lists below is the ``+x...`` preference of dcmqrscp.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydicom.uid import (
    JPEG2000,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext

from pyqrscp.config import Access
from pyqrscp.config.options import Options

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"


UNCOMPRESSED: tuple[str, ...] = (
    str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian), str(ExplicitVRBigEndian))

_PREFERRED_FIRST = {
    "little": ExplicitVRLittleEndian, "big": ExplicitVRBigEndian,
    "lossless": JPEGLosslessSV1, "jpeg8": JPEGBaseline8Bit, "jpeg12": JPEGExtended12Bit,
    "j2k-lossless": JPEG2000Lossless, "j2k-lossy": JPEG2000, "jls-lossless": JPEGLSLossless,
    "jls-lossy": JPEGLSNearLossless, "rle": RLELossless, "deflated": DeflatedExplicitVRLittleEndian,
}


def accepted_storage_syntaxes(prefer: str) -> list[str]:
    """Transfer syntaxes for incoming storage, most preferred first (dcmqrscp ``+x...``).

    Unlike dcmqrscp (uncompressed only unless ``+x`` names a codec), every syntax pydicom knows is
    accepted by default: pyqrscp stores bytes as received and never needs to decode them.
    ``+xi`` restricts to implicit VR little endian, as in dcmqrscp.
    """
    if prefer == "implicit":
        return [str(ImplicitVRLittleEndian)]
    first = _PREFERRED_FIRST.get(prefer)
    ordered = ([str(first)] if first else []) + list(UNCOMPRESSED)
    ordered += [str(ts) for ts in AllTransferSyntaxes]
    return list(dict.fromkeys(ordered))


def proposed_syntaxes(propose: str) -> list[str]:
    """Uncompressed syntaxes for outgoing associations, in dcmqrscp's ``-x...`` order."""
    if propose == "implicit":
        return [str(ImplicitVRLittleEndian)]
    if propose == "big":
        return [str(ExplicitVRBigEndian), str(ExplicitVRLittleEndian),
                str(ImplicitVRLittleEndian)]
    return list(UNCOMPRESSED)


@dataclass(frozen=True, slots=True)
class QueryModels:
    """The SOP classes of each Q/R information model that is switched on."""

    find: tuple[str, ...]
    move: tuple[str, ...]
    get: tuple[str, ...]


def query_models(options: Options) -> QueryModels:
    """Honour ``-QP``/``-QS``/``-QO`` and ``--disable-get``."""
    models = []
    if not options.no_patient_root:
        models.append((PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET))
    if not options.no_study_root:
        models.append((STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET))
    if not options.no_patient_study:
        models.append((PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE,
                       PATIENT_STUDY_ONLY_GET))
    return QueryModels(
        find=tuple(str(m[0]) for m in models),
        move=tuple(str(m[1]) for m in models),
        get=() if options.disable_get else tuple(str(m[2]) for m in models),
    )


@lru_cache(maxsize=1)
def storage_sop_classes() -> tuple[str, ...]:
    """Every storage SOP class pynetdicom knows."""
    return tuple(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)


def contexts_for(access: Access, options: Options, get_storage_classes: frozenset[str],
                 allow_store: bool = True, proposed: frozenset[str] | None = None
                 ) -> list[PresentationContext]:
    """The contexts an AE with ``access`` supports for one association.

    ``get_storage_classes`` are the storage SOP classes the requestor offered to play SCP for
    (SCP/SCU role selection, as C-GET requires); an ``R`` area accepts exactly those, in the SCP
    role only, so C-GET works from it while storing into it stays refused.  With ``proposed``
    (the requestor's abstract syntaxes) only those are built: building all ~180 contexts costs
    ~65 ms, which every association would otherwise pay.
    """
    wanted = (lambda uid: True) if proposed is None else proposed.__contains__
    contexts = [_context(VERIFICATION, UNCOMPRESSED, None)] if wanted(VERIFICATION) else []
    storage_syntaxes = tuple(accepted_storage_syntaxes(options.prefer_transfer_syntax))
    models = query_models(options)
    can_store = access.can_store and allow_store
    for sop_class in filter(wanted, storage_sop_classes()):
        get_role = access.can_query and bool(models.get) and sop_class in get_storage_classes
        if can_store or get_role:
            contexts.append(_context(sop_class, storage_syntaxes, (can_store, get_role)))
    if access.can_query:
        retrieve = models.move + models.get
        if options.require_find:
            retrieve = tuple(uid for uid in retrieve if _find_of(uid) in (proposed or ()))
        contexts += [_context(uid, UNCOMPRESSED, None)
                     for uid in models.find + retrieve if wanted(uid)]
    if access.can_store and wanted(STORAGE_COMMITMENT_PUSH_MODEL):
        # the requester may take the SCP role to get commitment reports in-band
        contexts.append(_context(STORAGE_COMMITMENT_PUSH_MODEL, UNCOMPRESSED, (True, True)))
    return contexts


@lru_cache(maxsize=4096)
def _context(sop_class: str, syntaxes: tuple[str, ...], roles: tuple[bool, bool] | None
             ) -> PresentationContext:
    """One supported context, built once per process: pynetdicom validates every UID of it
    (~0.2 ms a context), and only reads supported contexts while negotiating."""
    context = build_context(sop_class, list(syntaxes))
    if roles is not None:
        context.scu_role, context.scp_role = roles
    return context


def _find_of(retrieve_sop_class: str) -> str:
    """The FIND SOP class of the same model (MOVE ...2.1.2 or GET ...2.1.3 gives ...2.1.1)."""
    return retrieve_sop_class[:-1] + "1"


def _uid_text(uid: object) -> str:
    name = getattr(uid, "name", "")
    return f"{name} ({uid})" if name and name != str(uid) else str(uid)


def negotiation_lines(accepted: list[PresentationContext],
                      rejected: list[PresentationContext]) -> list[str]:
    """The negotiated presentation contexts, as dcmqrscp's ``-d`` lists them: each context's
    ID, abstract syntax and outcome (transfer syntax and role, or the rejection reason)."""
    lines = []
    taken = {id(context) for context in accepted}  # not ==: it compares every field
    for context in sorted([*accepted, *rejected], key=lambda cx: cx.context_id or 0):
        head = f"Context ID {context.context_id}: {_uid_text(context.abstract_syntax)}"
        if id(context) in taken:
            role = "/".join(r for r, on in (("SCU", context.as_scu), ("SCP", context.as_scp))
                            if on) or "default"
            lines.append(f"{head}: accepted, {_uid_text(context.transfer_syntax[0])}, "
                         f"our role {role}")
        else:
            lines.append(f"{head}: rejected ({str(context.status).lower()})")
    return lines
