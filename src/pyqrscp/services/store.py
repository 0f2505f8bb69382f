"""C-STORE: keep the bytes as received, in the called AE title's storage area."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from pyqrscp.dicomfile import read_header
from pyqrscp.errors import InvalidDataset, PyqrscpError
from pyqrscp.part10 import file_header
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)


def handle(services: Services, event: Any) -> int | Dataset:
    """Validate, store durably, index; answer only once the index row has committed."""
    from pyqrscp.services import failure, peer

    entry = services.entry_for(event)
    request = event.request
    if not entry.access.can_store:
        LOGGER.warning("Store refused from %s: %s is read-only", peer(event), entry.ae_title)
        return failure(PyqrscpError(f"{entry.ae_title} is read-only"),
                       Status.REFUSED_NOT_AUTHORIZED)
    if services.options.ignore:
        LOGGER.info("Received Store Request from %s (ignored, --ignore)", peer(event))
        return int(Status.SUCCESS)
    data = file_header(_uid(request.AffectedSOPClassUID), _uid(request.AffectedSOPInstanceUID),
                       str(event.context.transfer_syntax),
                       str(event.assoc.requestor.ae_title).strip()
                       ) + event.encoded_dataset(include_meta=False)
    try:
        header = read_header(data, services.options.uid_padding)
        _check_command(request, header.sop_class_uid, header.sop_instance_uid,
                       services.options.uid_padding)
        result = services.area_for(entry).store(header, data)
    except PyqrscpError as error:
        LOGGER.error("Store failed from %s: %s", peer(event), error)
        return failure(error)
    LOGGER.info("Stored %s from %s as %s%s", header.sop_instance_uid, peer(event),
                result.file_name, " (replaced older copy)" if result.replaced else "")
    return int(Status.SUCCESS)


def _check_command(request: Any, sop_class_uid: str, sop_instance_uid: str,
                   uid_padding: bool) -> None:
    """The command's UIDs must name the dataset that follows (dcmqrscp checks the same)."""
    def clean(value: Any) -> str:
        text = str(value or "").rstrip("\x00")
        return text.strip(" ") if uid_padding else text

    if clean(request.AffectedSOPClassUID) != sop_class_uid:
        raise InvalidDataset(f"SOP Class UID differs from the command's: {sop_class_uid}")
    if clean(request.AffectedSOPInstanceUID) != sop_instance_uid:
        raise InvalidDataset(f"SOP Instance UID differs from the command's: {sop_instance_uid}")


def _uid(value: Any) -> str:
    """A UID from the command as text fit for the file header (padding removed)."""
    return str(value or "").strip(" \x00")
