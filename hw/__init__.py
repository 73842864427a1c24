"""Amaranth gateware of the ZipML engine and board tops."""
