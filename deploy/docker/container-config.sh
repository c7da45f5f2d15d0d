#!/bin/sh
# Prints the image's default config: the repository's gateway.toml with both listeners on all
# interfaces of the container and the state in /var/lib/switchyard (a volume). Everything else,
# the embedded simulated agents included, is as in the repository, so the image serves with
# nothing else running. Fails if the file no longer has the lines it rewrites.
set -eu
src=${1:-gateway.toml}
for line in 'listen = "127.0.0.1:8080"' 'listen = "127.0.0.1:9090"' 'state_dir = "var"'; do
    grep -q "^$line" "$src" || { echo "container-config.sh: $src has no line starting with: $line" >&2; exit 1; }
done
sed -e 's|^listen = "127.0.0.1:8080"|listen = "0.0.0.0:8080"|' \
    -e 's|^listen = "127.0.0.1:9090"|listen = "0.0.0.0:9090"|' \
    -e 's|^state_dir = "var"|state_dir = "/var/lib/switchyard"|' \
    "$src"
