"""ggtool: one CLI and one store for the local-model path."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ggtool")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"

# The llama.cpp commit whose formats and quantizers ggtool's outputs match
# (the one vendored by llama-cpp-python 0.3.36).
LLAMA_CPP_COMMIT = "0c1e57098"
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
