"""GGUF reading and writing: the one reader and the one writer every path uses."""

from ggtool.gguf_io.model import KVEntry, TensorInfo
from ggtool.gguf_io.reader import GGUFFile, read_gguf
from ggtool.gguf_io.writer import GGUFStreamWriter, TensorSpec

__all__ = ["GGUFFile", "GGUFStreamWriter", "KVEntry", "TensorInfo", "TensorSpec", "read_gguf"]
