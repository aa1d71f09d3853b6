#!/bin/sh
# Runs the container's command; with GATEHOUSE_MIGRATE=1 applies migrations first.
set -eu

if [ "${GATEHOUSE_MIGRATE:-0}" = "1" ]; then
    python manage.py migrate --noinput
fi

exec "$@"
