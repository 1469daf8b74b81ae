#!/bin/bash
# bash, not sh: dash drops variables such as HDFS-SITE.XML_dfs.replication from the environment.
# Renders Hadoop's config from the environment, formats the namenode's storage only on the
# first start of an empty volume (so its cluster ID survives restarts), then runs the command.
set -eu

python3 /opt/kit/render_config.py "$HADOOP_CONF_DIR"

if [ "$*" = "hdfs namenode" ]; then
  # from the environment it was rendered from: 'hdfs getconf' would start a JVM on every start
  name_dir="$(printenv 'HDFS-SITE.XML_dfs.namenode.name.dir' || hdfs getconf -confKey dfs.namenode.name.dir 2>/dev/null)"
  name_dir="${name_dir#file://}"
  if [ ! -f "$name_dir/current/VERSION" ]; then
    if [ -d "$name_dir" ] && [ -n "$(ls -A "$name_dir")" ]; then
      echo "entrypoint: $name_dir holds files but no current/VERSION; refusing to format over them." >&2
      echo "entrypoint: inspect the volume, or remove it with './kit down --volumes' to start afresh." >&2
      exit 1
    fi
    echo "entrypoint: first start on an empty volume: formatting $name_dir" >&2
    hdfs namenode -format -nonInteractive
  fi
fi

exec "$@"
