#!/usr/bin/env bash
# README's test command: install what the tests need at the versions of scripts/constraints.txt
# (refresh that lock with scripts/lock.sh), make sure a Redis server answers on 127.0.0.1:6379
# (start a throwaway one if the binary exists), run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

"$PY" -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt \
  -e ".[test,airflow,python-tools]"

url="${AIRFIX_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
ping() { "$PY" -c "import redis,sys; redis.Redis.from_url('$url', socket_connect_timeout=1).ping()" 2>/dev/null; }
if ! ping; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "no Redis answers at $url: starting a throwaway redis-server on 127.0.0.1:6379"
    mkdir -p /tmp/airfix-test-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/airfix-test-redis --logfile /tmp/airfix-test-redis/redis.log
    for _ in $(seq 1 50); do ping && break; sleep 0.1; done
    ping || { echo "redis-server did not come up; see /tmp/airfix-test-redis/redis.log"; exit 1; }
  else
    echo "no Redis answers at $url and redis-server is not installed."
    echo "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
    echo "or point AIRFIX_TEST_REDIS_URL at a server you may flush (db 15 is used)."
    exit 1
  fi
fi

# the suite's groups run in parallel processes, one test file per worker at a time (tests in a file
# may share fixtures and state); each worker gets its own Redis database (tests/conftest.py)
exec "$PY" -m pytest -n "${AIRFIX_TEST_WORKERS:-2}" --dist loadfile "$@"
