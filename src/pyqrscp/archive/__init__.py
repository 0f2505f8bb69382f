"""The archive: storage areas (files), quota, header reading, storage commitments, rebuilding,
and the index behind one seam (``index/``)."""
