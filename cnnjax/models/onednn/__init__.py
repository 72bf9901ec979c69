"""oneDNN convolutions for XLA:CPU, through XLA's FFI (see conv.cc, build.py, conv.py)."""
