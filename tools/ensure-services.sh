#!/usr/bin/env bash
# Make sure the servers novanet's tests use answer on 127.0.0.1; install and
# start the ones that do not (a fresh machine). Servers already running (CI's)
# are left alone.
set -euo pipefail
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
export DEBIAN_FRONTEND=noninteractive
wait_port() {
    for _ in $(seq 1 60); do listening "$1" && return 0; sleep 1; done
    echo "novanet: $2 did not start listening on 127.0.0.1:$1" >&2
    return 1
}
for service in "$@"; do
    case "$service" in
        rabbitmq)
            listening 5672 && continue
            echo "==> starting RabbitMQ" >&2
            command -v rabbitmq-server >/dev/null || { apt-get update -qq; apt-get install -y -qq rabbitmq-server >/dev/null; }
            rabbitmq-server -detached >/dev/null 2>&1 || true
            wait_port 5672 RabbitMQ
            ;;
        mariadb)
            listening 3306 && continue
            echo "==> starting MariaDB" >&2
            command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || { apt-get update -qq; apt-get install -y -qq mariadb-server >/dev/null; }
            start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null
            wait_port 3306 MariaDB
            ;;
        postgresql)
            listening 5432 && continue
            echo "==> starting PostgreSQL" >&2
            ls /etc/postgresql/*/main >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq postgresql >/dev/null; }
            version=$(ls /etc/postgresql | sort -n | tail -1)
            hba=/etc/postgresql/$version/main/pg_hba.conf
            # The tests connect as postgres over TCP without a password.
            grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start
            wait_port 5432 PostgreSQL
            ;;
    esac
done
