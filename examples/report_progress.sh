#!/bin/sh
# A command that reports to asyncjobs: JSON lines on stdout (protocol v1, runner/PROTOCOL.md).
#
# Any executable can do this, in any language: print one JSON object per line. Lines that
# are not protocol JSON become info logs, stderr lines become error logs, and exit 0 means
# success. The job's ids and shared data arrive as JOB_* environment variables.
#
# Usage (asyncjobs runs it; see examples/commands.py): report_progress.sh FILES
set -eu

files=${1:?usage: report_progress.sh FILES}
echo "backing up ${files} files of ${JOB_SHARED_FOLDER:-?} (job ${JOB_ID}, attempt ${JOB_ATTEMPT})"

i=1
while [ "$i" -le "$files" ]; do
    sleep 0.02  # the real work would go here
    printf '{"type": "progress", "progress": %d, "message": "file %d of %d"}\n' \
        "$((i * 100 / files))" "$i" "$files"
    printf '{"type": "log", "level": "debug", "message": "copied file %d", "data": {"file": %d}}\n' \
        "$i" "$i"
    i=$((i + 1))
done

echo "the disk is 91% full" >&2
printf '{"type": "shared", "key": "last_backup_files", "value": %d}\n' "$files"
printf '{"type": "result", "value": {"files": %d, "folder": "%s"}}\n' "$files" "${JOB_SHARED_FOLDER:-?}"
