#!/bin/sh
# dedupd container entrypoint: run the command as the unprivileged user PUID:PGID.
#
#   PUID, PGID  numeric uid/gid to run as (default 1000:1000, the image's `dedupd` user). Match
#               the owner of the shared upload folder, as NAS images do.
#   UMASK       optional umask for files the daemon creates (reports, quarantine copies), e.g. 002.
#
# Started as root (the default): moves the `dedupd` user/group to PUID/PGID, makes the state and
# socket directories theirs, then drops every privilege with setpriv (util-linux, in the base
# image) and execs the command, so the daemon is PID 1's replacement and gets SIGTERM directly.
# Started as non-root (`docker run --user 1000:1000`, Kubernetes runAsNonRoot): runs the command
# as is; the volumes must then already be writable for that user.
# Never touches the contents of /data or /quarantine.
set -eu

# `docker run IMAGE --log-level debug` = `dedupd run --log-level debug`
case "${1:-}" in
  -*) set -- dedupd run "$@" ;;
  "") set -- dedupd run ;;
esac

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

if [ -n "${UMASK:-}" ]; then
  umask "$UMASK"
fi

if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi

PUID=${PUID:-1000}
PGID=${PGID:-1000}
case "$PUID$PGID" in
  *[!0-9]*) log "PUID and PGID must be numbers, got PUID=$PUID PGID=$PGID"; exit 64 ;;
esac
if [ "$PUID" = 0 ] || [ "$PGID" = 0 ]; then
  log "refusing PUID/PGID 0: dedupd does not need root; give the owner of your upload folder"
  exit 64
fi

# Give the names dedupd:dedupd the requested ids (so `ls -l` and `id` read well). A read-only
# root file system (`read_only: true`) cannot be changed: then ids are used numerically.
if [ "$(id -g dedupd 2>/dev/null || true)" != "$PGID" ]; then
  groupmod --non-unique --gid "$PGID" dedupd 2>/dev/null \
    || log "cannot move group dedupd to gid $PGID (read-only /etc?); running with the numeric gid"
fi
if [ "$(id -u dedupd 2>/dev/null || true)" != "$PUID" ]; then
  usermod --non-unique --uid "$PUID" dedupd 2>/dev/null \
    || log "cannot move user dedupd to uid $PUID (read-only /etc?); running with the numeric uid"
fi

# State and socket directories belong to the daemon. The store is re-owned recursively only when
# its owner changed (a new PUID), so a restart does not walk it each time.
for dir in /var/lib/dedupd /run/dedupd; do
  mkdir -p "$dir"
  if [ "$(stat -c %u:%g "$dir")" != "$PUID:$PGID" ]; then
    chown -R "$PUID:$PGID" "$dir"
  fi
done
# The quarantine volume: only its top folder, and only while it is empty (a fresh volume).
if [ -d /quarantine ] && [ -z "$(ls -A /quarantine 2>/dev/null)" ]; then
  chown "$PUID:$PGID" /quarantine 2>/dev/null || true
fi
# Plain reads of the watched folder are enough for `policy: report`; warn early if even that fails.
if [ -d /data ] && ! setpriv --reuid="$PUID" --regid="$PGID" --clear-groups test -r /data -a -x /data; then
  log "warning: uid $PUID / gid $PGID cannot read /data; set PUID/PGID to the folder's owner"
fi

export HOME=/var/lib/dedupd USER=dedupd LOGNAME=dedupd
exec setpriv --reuid="$PUID" --regid="$PGID" --clear-groups --inh-caps=-all \
  --no-new-privs "$@"
