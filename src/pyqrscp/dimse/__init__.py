"""Sans-IO DICOM upper layer: PDUs, command sets, Part 10 headers, identifier encoding,
presentation contexts and transfer syntax conversion; bytes in, bytes out, no sockets."""
