"""DICOMweb (PS3.18: QIDO-RS, WADO-RS, STOW-RS) per AE title, and a page for people.

Everything here sits on the storage areas and the index, as the DICOM services do: searches go
through the same query entry point as C-FIND, stores through the same crash-safe store as
C-STORE.  The listener runs beside the DICOM server in the same process (``listener.py``).
"""
