"""The shard format: the contract that `trainer/` and other projects read.

One sample's members (`format`), tar writing and reading (`tar`), the torch-free reader
(`reader`), the dataset folder with its status, stats and index files (`folder`), and the
layouts of the arrays: landmarks and parsing labels (`layout`). Needs only numpy, OpenCV
and the standard library; docs/shard-format.md describes it for readers in any language.

    from pipeline.shards import ShardReader
    for clip in ShardReader("shards/sample", partitions=["fold1"]):
        frames = clip.frames([0, 8])
"""

from pipeline.shards.format import FORMAT_VERSION, ClipSample, ShardFormatError, decode_sample, encode_sample
from pipeline.shards.reader import ShardReader, list_shards, read_shard, shards_for_this_process
from pipeline.shards.tar import ShardWriteError, ShardWriter

__all__ = ["FORMAT_VERSION", "ClipSample", "ShardFormatError", "ShardReader", "ShardWriteError", "ShardWriter",
           "decode_sample", "encode_sample", "list_shards", "read_shard", "shards_for_this_process"]
