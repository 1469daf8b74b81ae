#!/bin/bash
# bash, not sh: dash drops variables such as HDFS-SITE.XML_dfs.replication from the environment.
# Renders spark-defaults.conf and core-site.xml from the environment, then runs the command:
# the role is the command (Master, Worker, HistoryServer or spark-submit).
set -eu
python3 /opt/kit/render_config.py "$SPARK_CONF_DIR"
exec "$@"
