"""Float reference and bit-exact golden model of ZipML SGD."""
