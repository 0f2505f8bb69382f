"""Value representations by the shape of their explicit VR element header (PS3.5 7.1.2).

A VR in :data:`LONG_LENGTH_VRS` has two reserved bytes and a 4-byte value length; the others a
2-byte length.  Every encoder and header walker in pyqrscp takes the sets from here.
"""

from __future__ import annotations

LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                             "UT", "UV"})
SHORT_LENGTH_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                              "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"})

LONG_LENGTH_VR_CODES = frozenset(vr.encode("ascii") for vr in LONG_LENGTH_VRS)
""":data:`LONG_LENGTH_VRS` as the two bytes of an element header."""
SHORT_LENGTH_VR_CODES = frozenset(vr.encode("ascii") for vr in SHORT_LENGTH_VRS)
""":data:`SHORT_LENGTH_VRS` as the two bytes of an element header."""
