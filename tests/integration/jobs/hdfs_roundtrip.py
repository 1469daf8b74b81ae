"""Write seeded random bytes to HDFS with hdfs-native, read them back, print both digests."""

import hashlib
import random
import sys

from hdfs_native import Client, WriteOptions

from jobs.lib.result import emit

path, size, replication = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = random.Random(path).randbytes(size)
client = Client()  # fs.defaultFS from $HADOOP_CONF_DIR/core-site.xml
with client.create(path, WriteOptions(replication=replication)) as writer:
    writer.write(payload)
with client.read(path) as reader:
    read_back = reader.read()
emit(
    {
        "written_sha256": hashlib.sha256(payload).hexdigest(),
        "read_sha256": hashlib.sha256(read_back).hexdigest(),
        "length": len(read_back),
    }
)
