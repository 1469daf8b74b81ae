#!/bin/bash
# bash, not sh: dash drops variables such as HDFS-SITE.XML_dfs.replication from the environment.
# Renders spark-defaults.conf and core-site.xml from the environment, then runs the command:
# the role is the command (Master, Worker, HistoryServer or spark-submit).
set -eu
python3 /opt/kit/render_config.py "$SPARK_CONF_DIR"
# A service that needs another (the worker its master, the history server its HDFS folder) waits
# for it here, bounded by KIT_WAIT_SECONDS, then starts; on a timeout it starts anyway and says so.
if [ -n "${KIT_WAIT_FOR:-}" ] && ! python3 /opt/kit/healthcheck.py wait; then
  echo "entrypoint: starting without it" >&2
fi
exec "$@"
