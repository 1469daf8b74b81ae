"""Read a file from HDFS with hdfs-native and print its digest and length."""
import hashlib
import json
import sys

from hdfs_native import Client

with Client().read(sys.argv[1]) as reader:
    data = reader.read()
print("RESULT " + json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}))
