"""Read a file from HDFS with hdfs-native and print its digest and length."""

import hashlib
import sys

from hdfs_native import Client

from jobs.lib.result import emit

with Client().read(sys.argv[1]) as reader:
    data = reader.read()
emit({"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)})
