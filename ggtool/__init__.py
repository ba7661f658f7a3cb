"""ggtool: one CLI and one store for the local-model path."""

# A literal (pyproject reads it): importlib.metadata costs 40-90 ms at every CLI start.
__version__ = "0.1.0"

# The llama.cpp commit whose formats and quantizers ggtool's outputs match
# (the one vendored by llama-cpp-python 0.3.36).
LLAMA_CPP_COMMIT = "0c1e57098"
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
