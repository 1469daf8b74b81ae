#!/bin/sh
# Renders spark-defaults.conf and core-site.xml from the environment, then runs the command:
# the role is the command (Master, Worker, HistoryServer or spark-submit).
set -eu
python3 /opt/kit/render_config.py "$SPARK_CONF_DIR"
exec "$@"
